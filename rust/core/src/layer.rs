//! One sparse layer: weights with their aligned optimizer state, and the bias.

use crate::csc::SparseMatrix;
use crate::error::{invalid, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    pub(crate) w: SparseMatrix,
    /// Momentum (the optimizer's first moment) of each connection, aligned
    /// with `w.values()`.
    pub(crate) momentum: Vec<f32>,
    /// Adam's second moment of each connection, aligned the same way; empty
    /// while the optimizer keeps none.
    pub(crate) second: Vec<f32>,
    /// Gradient of each connection from the last backward pass.
    pub(crate) grad: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    pub(crate) bias_momentum: Vec<f32>,
    pub(crate) bias_second: Vec<f32>,
    pub(crate) bias_grad: Vec<f32>,
}

/// Bytes a built layer of `nnz` connections from `n_in` to `n_out` neurons
/// holds, as [`Layer::memory_bytes`] reports them, computed before building
/// it (so a model too large for the machine is refused, not attempted): both
/// views' pointers, six `u32`/`f32` arrays per connection (row index, value,
/// the transposed view's two, momentum, gradient), three per output neuron.
/// Saturates at `u64::MAX` for absurd sizes.
pub fn layer_bytes_for(n_in: usize, n_out: usize, nnz: usize) -> u64 {
    let word = std::mem::size_of::<usize>() as u64;
    let pointers = (n_in as u64).saturating_add(n_out as u64).saturating_add(2);
    word.saturating_mul(pointers)
        .saturating_add((nnz as u64).saturating_mul(24))
        .saturating_add((n_out as u64).saturating_mul(12))
}

impl Layer {
    /// A layer with zero bias and zero optimizer state.
    pub fn new(w: SparseMatrix) -> Self {
        let (nnz, n_out) = (w.nnz(), w.n_out());
        Layer {
            w,
            momentum: vec![0.0; nnz],
            second: Vec::new(),
            grad: vec![0.0; nnz],
            bias: vec![0.0; n_out],
            bias_momentum: vec![0.0; n_out],
            bias_second: Vec::new(),
            bias_grad: vec![0.0; n_out],
        }
    }

    /// A layer from saved state; checks that every array fits the matrix.
    pub fn from_parts(
        w: SparseMatrix,
        bias: Vec<f32>,
        momentum: Vec<f32>,
        bias_momentum: Vec<f32>,
    ) -> Result<Self> {
        let (nnz, n_out) = (w.nnz(), w.n_out());
        if bias.len() != n_out || bias_momentum.len() != n_out {
            invalid!(
                "bias arrays have lengths {} and {}, expected n_out = {n_out}",
                bias.len(),
                bias_momentum.len()
            );
        }
        if momentum.len() != nnz {
            invalid!(
                "momentum has {} entries for {nnz} connections",
                momentum.len()
            );
        }
        let all = w
            .values()
            .iter()
            .chain(&bias)
            .chain(&momentum)
            .chain(&bias_momentum);
        if all.into_iter().any(|v| !v.is_finite()) {
            invalid!("layer parameters contain NaN or infinite values");
        }
        Ok(Layer {
            w,
            momentum,
            second: Vec::new(),
            grad: vec![0.0; nnz],
            bias,
            bias_momentum,
            bias_second: Vec::new(),
            bias_grad: vec![0.0; n_out],
        })
    }

    /// The same layer with Adam's second moments from saved state (checked:
    /// one per connection and per bias, finite, not negative).
    pub fn with_second(mut self, second: Vec<f32>, bias_second: Vec<f32>) -> Result<Self> {
        if second.len() != self.nnz() || bias_second.len() != self.bias.len() {
            invalid!(
                "second moments have lengths {} and {}, expected {} connections and {} biases",
                second.len(),
                bias_second.len(),
                self.nnz(),
                self.bias.len()
            );
        }
        if second
            .iter()
            .chain(&bias_second)
            .any(|v| !(v.is_finite() && *v >= 0.0))
        {
            invalid!("second moments must be finite and not negative");
        }
        self.second = second;
        self.bias_second = bias_second;
        Ok(self)
    }

    /// Whether the layer keeps second moments (an Adam optimizer trained it).
    pub fn has_second(&self) -> bool {
        !self.bias_second.is_empty() || (!self.second.is_empty() && self.bias.is_empty())
    }

    /// Starts (at zero) or drops the second moments, for an optimizer that
    /// keeps them or not.
    pub(crate) fn keep_second(&mut self, keep: bool) {
        if keep && !self.has_second() {
            self.second = vec![0.0; self.nnz()];
            self.bias_second = vec![0.0; self.bias.len()];
        } else if !keep {
            self.second = Vec::new();
            self.bias_second = Vec::new();
        }
    }

    /// Both moments of connection `k` (the second is 0 when none is kept).
    pub(crate) fn state(&self, k: usize) -> (f32, f32) {
        (self.momentum[k], self.second.get(k).copied().unwrap_or(0.0))
    }

    /// Zeroes both moments of connection `k` (a connection made anew).
    pub(crate) fn reset_state(&mut self, k: usize) {
        self.momentum[k] = 0.0;
        if let Some(v) = self.second.get_mut(k) {
            *v = 0.0;
        }
    }

    /// Zeroes both moments of bias `j`.
    pub(crate) fn reset_bias_state(&mut self, j: usize) {
        self.bias_momentum[j] = 0.0;
        if let Some(v) = self.bias_second.get_mut(j) {
            *v = 0.0;
        }
    }

    pub fn second(&self) -> &[f32] {
        &self.second
    }
    pub fn bias_second(&self) -> &[f32] {
        &self.bias_second
    }

    pub fn weights(&self) -> &SparseMatrix {
        &self.w
    }
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }
    pub fn momentum(&self) -> &[f32] {
        &self.momentum
    }
    pub fn bias_momentum(&self) -> &[f32] {
        &self.bias_momentum
    }
    pub fn grad(&self) -> &[f32] {
        &self.grad
    }
    pub fn bias_grad(&self) -> &[f32] {
        &self.bias_grad
    }
    pub fn nnz(&self) -> usize {
        self.w.nnz()
    }

    /// Replaces the connection values (same topology).
    pub fn set_values(&mut self, values: &[f32]) -> Result<()> {
        if values.len() != self.w.nnz() {
            invalid!(
                "{} values given for {} connections",
                values.len(),
                self.w.nnz()
            );
        }
        if values.iter().any(|v| !v.is_finite()) {
            invalid!("weight values contain NaN or infinite entries");
        }
        self.w.values_mut().copy_from_slice(values);
        Ok(())
    }

    pub fn set_bias(&mut self, bias: &[f32]) -> Result<()> {
        if bias.len() != self.bias.len() {
            invalid!(
                "{} bias values given for {} neurons",
                bias.len(),
                self.bias.len()
            );
        }
        if bias.iter().any(|v| !v.is_finite()) {
            invalid!("bias contains NaN or infinite entries");
        }
        self.bias.copy_from_slice(bias);
        Ok(())
    }

    /// Installs a new topology with its aligned momentum (gradient reset).
    /// New weights with their moments (`second` empty when none is kept).
    pub(crate) fn replace_weights(
        &mut self,
        w: SparseMatrix,
        momentum: Vec<f32>,
        second: Vec<f32>,
    ) {
        debug_assert_eq!(w.nnz(), momentum.len());
        debug_assert!(second.is_empty() || second.len() == w.nnz());
        self.grad = vec![0.0; w.nnz()];
        self.w = w;
        self.momentum = momentum;
        self.second = second;
    }

    /// Bytes of parameters and optimizer state held by this layer.
    pub fn memory_bytes(&self) -> usize {
        self.w.memory_bytes()
            + 4 * (self.momentum.len()
                + self.second.len()
                + self.grad.len()
                + self.bias.len()
                + self.bias_momentum.len()
                + self.bias_second.len()
                + self.bias_grad.len())
    }
}

/// Assembles a layer's new connections column by column, each with its
/// moments, then installs them (gradient reset). The topology operations
/// (neuron removal, recycling) rebuild layers this way.
pub(crate) struct ColumnBuilder {
    col_ptr: Vec<usize>,
    row_idx: Vec<u32>,
    values: Vec<f32>,
    momentum: Vec<f32>,
    second: Option<Vec<f32>>,
}

impl ColumnBuilder {
    /// A builder for `layer`'s new connections (keeping second moments when it does).
    pub fn for_layer(layer: &Layer, nnz: usize) -> Self {
        let n_out = layer.w.n_out();
        let mut col_ptr = Vec::with_capacity(n_out + 1);
        col_ptr.push(0);
        ColumnBuilder {
            col_ptr,
            row_idx: Vec::with_capacity(nnz),
            values: Vec::with_capacity(nnz),
            momentum: Vec::with_capacity(nnz),
            second: layer.has_second().then(|| Vec::with_capacity(nnz)),
        }
    }

    /// A connection with its moments `(m, v)` (zero for a new one).
    pub fn push(&mut self, row: u32, value: f32, (m, v): (f32, f32)) {
        self.row_idx.push(row);
        self.values.push(value);
        self.momentum.push(m);
        if let Some(second) = &mut self.second {
            second.push(v);
        }
    }

    /// Copies connections `range` of `layer` (storage positions) as they are.
    pub fn copy(&mut self, layer: &Layer, range: std::ops::Range<usize>) {
        self.row_idx
            .extend_from_slice(&layer.w.row_idx()[range.clone()]);
        self.values
            .extend_from_slice(&layer.w.values()[range.clone()]);
        self.momentum
            .extend_from_slice(&layer.momentum[range.clone()]);
        if let Some(second) = &mut self.second {
            second.extend_from_slice(&layer.second[range]);
        }
    }

    pub fn end_column(&mut self) {
        self.col_ptr.push(self.row_idx.len());
    }

    /// Replaces `layer`'s weights and momentum with the columns built.
    pub fn install(self, layer: &mut Layer, n_in: usize) {
        let n_out = self.col_ptr.len() - 1;
        let m = SparseMatrix::from_parts_unchecked(
            n_in,
            n_out,
            self.col_ptr,
            self.row_idx,
            self.values,
        );
        layer.replace_weights(m, self.momentum, self.second.unwrap_or_default());
    }
}
