//! Sparse weight storage.
//!
//! A layer maps `n_in` inputs to `n_out` outputs. Its connections are stored
//! once, grouped by output neuron (CSC of `W`, i.e. CSR of `Wᵀ`): output `j`
//! owns `row_idx[col_ptr[j]..col_ptr[j+1]]` (sorted, no duplicates) and the
//! matching `values`. The forward pass reads this view contiguously.
//!
//! The backward pass needs the transposed access (all connections leaving
//! input `i`); that view holds, per input row, the output index and the
//! position of the value in `values`. It is rebuilt only when the topology
//! changes. No dense `n_in × n_out` array exists anywhere.

use crate::error::{invalid, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct SparseMatrix {
    n_in: usize,
    n_out: usize,
    col_ptr: Vec<usize>,
    row_idx: Vec<u32>,
    values: Vec<f32>,
    row_ptr: Vec<usize>,
    t_col: Vec<u32>,
    t_pos: Vec<u32>,
}

/// Largest dimension or connection count a layer may have: indices are 32-bit.
pub const MAX_INDEX: usize = u32::MAX as usize;

impl SparseMatrix {
    /// Builds a matrix from the CSC arrays, checking every invariant: this is
    /// the entry point for data from outside (checkpoints, user imports).
    pub fn from_csc(
        n_in: usize,
        n_out: usize,
        col_ptr: Vec<usize>,
        row_idx: Vec<u32>,
        values: Vec<f32>,
    ) -> Result<Self> {
        if n_in == 0 || n_out == 0 {
            invalid!("a layer needs at least one input and one output, got {n_in} x {n_out}");
        }
        if n_in > MAX_INDEX || n_out > MAX_INDEX {
            invalid!("layer dimensions {n_in} x {n_out} exceed the 32-bit index limit");
        }
        if col_ptr.len() != n_out + 1 {
            invalid!(
                "column pointer array has length {}, expected n_out + 1 = {}",
                col_ptr.len(),
                n_out + 1
            );
        }
        let nnz = row_idx.len();
        if values.len() != nnz {
            invalid!("{} values for {} row indices", values.len(), nnz);
        }
        if nnz > MAX_INDEX {
            invalid!("{nnz} connections exceed the 32-bit limit of one layer");
        }
        if col_ptr[0] != 0 || col_ptr[n_out] != nnz {
            invalid!("column pointers must start at 0 and end at nnz = {nnz}");
        }
        for j in 0..n_out {
            let (a, b) = (col_ptr[j], col_ptr[j + 1]);
            if a > b || b > nnz {
                invalid!("column pointers are not non-decreasing at output {j}");
            }
            let rows = &row_idx[a..b];
            if let Some(&r) = rows.iter().find(|&&r| r as usize >= n_in) {
                invalid!("row index {r} out of range for {n_in} inputs (output {j})");
            }
            if rows.windows(2).any(|w| w[0] >= w[1]) {
                invalid!("row indices of output {j} are not strictly increasing (duplicate or unsorted connection)");
            }
        }
        Ok(Self::assemble(n_in, n_out, col_ptr, row_idx, values))
    }

    /// Builds from connections given as sorted, distinct linear indices
    /// `j * n_in + i` (CSC order). Internal: callers guarantee the invariants.
    pub(crate) fn from_sorted_linear(
        n_in: usize,
        n_out: usize,
        linear: &[u64],
        values: Vec<f32>,
    ) -> Self {
        debug_assert!(linear.windows(2).all(|w| w[0] < w[1]));
        debug_assert_eq!(linear.len(), values.len());
        let mut col_ptr = vec![0usize; n_out + 1];
        let mut row_idx = Vec::with_capacity(linear.len());
        for &l in linear {
            let j = (l / n_in as u64) as usize;
            col_ptr[j + 1] += 1;
            row_idx.push((l % n_in as u64) as u32);
        }
        for j in 0..n_out {
            col_ptr[j + 1] += col_ptr[j];
        }
        Self::assemble(n_in, n_out, col_ptr, row_idx, values)
    }

    /// Builds from CSC arrays the core produced itself (already valid).
    pub(crate) fn from_parts_unchecked(
        n_in: usize,
        n_out: usize,
        col_ptr: Vec<usize>,
        row_idx: Vec<u32>,
        values: Vec<f32>,
    ) -> Self {
        let m = Self::assemble(n_in, n_out, col_ptr, row_idx, values);
        debug_assert!(m.check_invariants().is_ok());
        m
    }

    /// The matrix with its transposed view built from valid CSC arrays.
    fn assemble(
        n_in: usize,
        n_out: usize,
        col_ptr: Vec<usize>,
        row_idx: Vec<u32>,
        values: Vec<f32>,
    ) -> Self {
        let mut m = SparseMatrix {
            n_in,
            n_out,
            col_ptr,
            row_idx,
            values,
            row_ptr: Vec::new(),
            t_col: Vec::new(),
            t_pos: Vec::new(),
        };
        m.rebuild_transposed();
        m
    }

    /// Counting sort of the connections by input row: O(nnz + n_in). Within a
    /// row the outputs come out increasing because columns are visited in order.
    fn rebuild_transposed(&mut self) {
        let nnz = self.row_idx.len();
        let mut row_ptr = vec![0usize; self.n_in + 1];
        for &r in &self.row_idx {
            row_ptr[r as usize + 1] += 1;
        }
        for i in 0..self.n_in {
            row_ptr[i + 1] += row_ptr[i];
        }
        let mut next = row_ptr.clone();
        let mut t_col = vec![0u32; nnz];
        let mut t_pos = vec![0u32; nnz];
        for j in 0..self.n_out {
            for k in self.col_ptr[j]..self.col_ptr[j + 1] {
                let r = self.row_idx[k] as usize;
                let slot = next[r];
                next[r] += 1;
                t_col[slot] = j as u32;
                t_pos[slot] = k as u32;
            }
        }
        self.row_ptr = row_ptr;
        self.t_col = t_col;
        self.t_pos = t_pos;
    }

    pub fn n_in(&self) -> usize {
        self.n_in
    }
    pub fn n_out(&self) -> usize {
        self.n_out
    }
    pub fn nnz(&self) -> usize {
        self.row_idx.len()
    }
    /// `n_in · n_out` as u64: the number of possible connections.
    pub fn capacity(&self) -> u64 {
        self.n_in as u64 * self.n_out as u64
    }
    pub fn is_dense(&self) -> bool {
        self.nnz() as u64 == self.capacity()
    }
    pub fn col_ptr(&self) -> &[usize] {
        &self.col_ptr
    }
    pub fn row_idx(&self) -> &[u32] {
        &self.row_idx
    }
    pub fn values(&self) -> &[f32] {
        &self.values
    }
    pub fn values_mut(&mut self) -> &mut [f32] {
        &mut self.values
    }
    /// The structure with mutable values (the topology stays).
    pub fn parts_mut(&mut self) -> (&[usize], &[u32], &mut [f32]) {
        (&self.col_ptr, &self.row_idx, &mut self.values)
    }
    /// Number of connections leaving input `i`.
    pub fn fan_out_of(&self, i: usize) -> usize {
        self.row_ptr[i + 1] - self.row_ptr[i]
    }
    pub fn row_ptr(&self) -> &[usize] {
        &self.row_ptr
    }
    pub fn t_col(&self) -> &[u32] {
        &self.t_col
    }
    pub fn t_pos(&self) -> &[u32] {
        &self.t_pos
    }

    /// Connections of output `j`: (input rows, values).
    pub fn column(&self, j: usize) -> (&[u32], &[f32]) {
        let r = self.col_ptr[j]..self.col_ptr[j + 1];
        (&self.row_idx[r.clone()], &self.values[r])
    }

    /// Whether connection (i, j) exists: binary search in column j.
    pub fn contains(&self, i: usize, j: usize) -> bool {
        self.position(i, j).is_some()
    }

    /// Index into `values` of connection (i, j), if it exists.
    pub fn position(&self, i: usize, j: usize) -> Option<usize> {
        let (rows, _) = self.column(j);
        rows.binary_search(&(i as u32))
            .ok()
            .map(|p| self.col_ptr[j] + p)
    }

    /// Number of connections entering each output neuron.
    pub fn fan_in(&self) -> Vec<usize> {
        self.col_ptr.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Number of connections leaving each input neuron.
    pub fn fan_out(&self) -> Vec<usize> {
        self.row_ptr.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Bytes held by the structure and values (not the optimizer state).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<usize>() * (self.col_ptr.len() + self.row_ptr.len())
            + 4 * (self.row_idx.len() + self.values.len() + self.t_col.len() + self.t_pos.len())
    }

    /// Full consistency check of both views (tests and debug builds).
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let nnz = self.nnz();
        if self.col_ptr.len() != self.n_out + 1 || self.col_ptr[self.n_out] != nnz {
            return Err("bad col_ptr".into());
        }
        for j in 0..self.n_out {
            let rows = &self.row_idx[self.col_ptr[j]..self.col_ptr[j + 1]];
            if rows.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("column {j} unsorted or duplicated"));
            }
            if rows.iter().any(|&r| r as usize >= self.n_in) {
                return Err(format!("column {j} has a row out of range"));
            }
        }
        if self.row_ptr.len() == self.n_in + 1 {
            for i in 0..self.n_in {
                for s in self.row_ptr[i]..self.row_ptr[i + 1] {
                    let p = self.t_pos[s] as usize;
                    let j = self.t_col[s] as usize;
                    if self.row_idx[p] as usize != i
                        || !(self.col_ptr[j]..self.col_ptr[j + 1]).contains(&p)
                    {
                        return Err(format!("transposed view inconsistent at input {i}"));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> SparseMatrix {
        // W (3 x 2): (0,0)=1, (2,0)=2, (1,1)=3, (2,1)=4
        SparseMatrix::from_csc(3, 2, vec![0, 2, 4], vec![0, 2, 1, 2], vec![1., 2., 3., 4.]).unwrap()
    }

    #[test]
    fn transposed_view_lists_outgoing_connections() {
        let m = example();
        assert_eq!(m.row_ptr(), &[0, 1, 2, 4]);
        assert_eq!(m.t_col(), &[0, 1, 0, 1]);
        let vals: Vec<f32> = m.t_pos().iter().map(|&p| m.values()[p as usize]).collect();
        assert_eq!(vals, vec![1., 3., 2., 4.]);
        m.check_invariants().unwrap();
        assert_eq!(m.fan_in(), vec![2, 2]);
        assert_eq!(m.fan_out(), vec![1, 1, 2]);
    }

    #[test]
    fn lookups() {
        let m = example();
        assert!(m.contains(2, 1));
        assert!(!m.contains(0, 1));
        assert_eq!(m.position(1, 1), Some(2));
    }

    #[test]
    fn rejects_bad_arrays() {
        let bad = [
            (vec![0, 2, 4], vec![0, 3, 1, 2]), // row out of range
            (vec![0, 2, 4], vec![2, 0, 1, 2]), // unsorted
            (vec![0, 2, 4], vec![0, 0, 1, 2]), // duplicate
            (vec![0, 3, 2], vec![0, 1, 2, 2]), // decreasing pointers
            (vec![0, 2], vec![0, 1, 1, 2]),    // wrong pointer length
        ];
        for (ptr, rows) in bad {
            assert!(SparseMatrix::from_csc(3, 2, ptr, rows, vec![0.; 4]).is_err());
        }
        assert!(SparseMatrix::from_csc(0, 2, vec![0, 0, 0], vec![], vec![]).is_err());
    }

    #[test]
    fn from_sorted_linear_matches_from_csc() {
        // linear = j * n_in + i
        let m = SparseMatrix::from_sorted_linear(3, 2, &[0, 2, 4, 5], vec![1., 2., 3., 4.]);
        assert_eq!(m, example());
    }
}
