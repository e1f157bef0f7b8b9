//! Output layer: softmax + cross-entropy, or sigmoid/identity + mean squared
//! error. Works on a feature-major block of `C × B` pre-activations.

use crate::activation::sigmoid;
use crate::error::{invalid, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Softmax output, cross-entropy against integer labels.
    CrossEntropy,
    /// Mean over outputs of the squared error against one-hot targets; the
    /// output activation is a sigmoid or the identity.
    Mse { sigmoid: bool },
}

/// What one batch's outputs are scored against: nothing (inference), class
/// labels, or target values (`c × b`, feature-major like the outputs).
#[derive(Clone, Copy, Debug)]
pub enum BatchTarget<'a> {
    None,
    Classes(&'a [u32]),
    Values(&'a [f32]),
}

/// Sums over one batch: the loss summed over samples and the number of
/// correctly classified samples (arg-max equals the label).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchLoss {
    pub loss_sum: f64,
    pub correct: usize,
}

/// The losses [`Loss::parse`] takes and the output activations of each (the
/// first is the default).
pub const LOSS_OUTPUTS: [(&str, &[&str]); 2] = [
    ("cross_entropy", &["softmax"]),
    ("mse", &["identity", "sigmoid"]),
];

impl Loss {
    pub fn parse(loss: &str, output_activation: &str) -> Result<Self> {
        Ok(match (loss, output_activation) {
            ("cross_entropy", "softmax") => Loss::CrossEntropy,
            ("mse", "sigmoid") => Loss::Mse { sigmoid: true },
            ("mse", "identity") => Loss::Mse { sigmoid: false },
            ("cross_entropy", other) => {
                invalid!("cross_entropy needs a 'softmax' output, got '{other}'")
            }
            ("mse", other) => {
                invalid!("mse needs a 'sigmoid' or 'identity' output, got '{other}'")
            }
            (other, _) => invalid!("loss must be 'cross_entropy' or 'mse', got '{other}'"),
        })
    }

    /// (loss, output activation) names as accepted by [`Loss::parse`].
    pub fn describe(&self) -> (&'static str, &'static str) {
        match self {
            Loss::CrossEntropy => ("cross_entropy", "softmax"),
            Loss::Mse { sigmoid: true } => ("mse", "sigmoid"),
            Loss::Mse { sigmoid: false } => ("mse", "identity"),
        }
    }

    /// Turns the pre-activations `out` (`c × b`, feature-major) into outputs
    /// in place (probabilities for softmax). With a `target`, returns the
    /// batch's loss (summed over samples, each times its weight) and accuracy
    /// count (class labels only); with `delta` as well, writes `∂L/∂z` of the
    /// weighted batch-mean loss `Σ wₛ lₛ / B` (so the 1/B is already in it).
    pub fn output(
        &self,
        out: &mut [f32],
        c: usize,
        b: usize,
        target: BatchTarget<'_>,
        weights: Option<&[f32]>,
        mut delta: Option<&mut [f32]>,
    ) -> BatchLoss {
        let mut total = BatchLoss::default();
        let labels = match target {
            BatchTarget::Classes(l) => Some(l),
            _ => None,
        };
        let values = match target {
            BatchTarget::Values(v) => Some(v),
            _ => None,
        };
        let scored = !matches!(target, BatchTarget::None);
        for s in 0..b {
            let label = labels.map(|l| l[s] as usize);
            let weight = weights.map_or(1.0, |w| w[s]);
            let inv_b = weight / b as f32;
            let mut best = 0;
            match *self {
                Loss::CrossEntropy => {
                    let mut m = f32::NEG_INFINITY;
                    for k in 0..c {
                        let z = out[k * b + s];
                        if z > m {
                            m = z;
                            best = k;
                        }
                    }
                    if !m.is_finite() {
                        // NaN or infinite logits: report a NaN loss, outputs NaN.
                        for k in 0..c {
                            out[k * b + s] = f32::NAN;
                        }
                        total.loss_sum = f64::NAN;
                        continue;
                    }
                    let mut se = 0.0f64;
                    for k in 0..c {
                        se += ((out[k * b + s] - m) as f64).exp();
                    }
                    if let Some(y) = label {
                        total.loss_sum += weight as f64 * (se.ln() - (out[y * b + s] - m) as f64);
                    }
                    for k in 0..c {
                        let p = (((out[k * b + s] - m) as f64).exp() / se) as f32;
                        out[k * b + s] = p;
                        if let (Some(d), Some(y)) = (delta.as_deref_mut(), label) {
                            d[k * b + s] = (p - if k == y { 1.0 } else { 0.0 }) * inv_b;
                        }
                    }
                }
                Loss::Mse { sigmoid: sig } => {
                    let mut m = f32::NEG_INFINITY;
                    let mut sq = 0.0f64;
                    let scale = 2.0 * inv_b / c as f32;
                    for k in 0..c {
                        let z = out[k * b + s];
                        let o = if sig { sigmoid(z) } else { z };
                        out[k * b + s] = o;
                        if o > m {
                            m = o;
                            best = k;
                        }
                        let t = match (label, values) {
                            (Some(y), _) => Some(if k == y { 1.0 } else { 0.0 }),
                            (None, Some(v)) => Some(v[k * b + s]),
                            _ => None,
                        };
                        if let Some(t) = t {
                            let e = o - t;
                            sq += (e as f64) * (e as f64);
                            if let Some(d) = delta.as_deref_mut() {
                                let slope = if sig { o * (1.0 - o) } else { 1.0 };
                                d[k * b + s] = scale * e * slope;
                            }
                        }
                    }
                    if scored {
                        total.loss_sum += weight as f64 * sq / c as f64;
                    }
                }
            }
            if label == Some(best) {
                total.correct += 1;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_scale_each_sample_and_values_are_regression_targets() {
        // c = 2 outputs, b = 2 samples; identity outputs against target values
        let z = [0.5f32, -1.0, 2.0, 0.0]; // feature-major: out[k * b + s]
        let t = [1.0f32, 0.0, 1.5, 1.0];
        let w = [2.0f32, 0.5];
        let loss = Loss::Mse { sigmoid: false };
        let (mut out, mut delta) = (z, [0.0f32; 4]);
        let r = loss.output(
            &mut out,
            2,
            2,
            BatchTarget::Values(&t),
            Some(&w),
            Some(&mut delta),
        );
        let mut expect = 0.0f64;
        for s in 0..2 {
            let mut sq = 0.0f64;
            for k in 0..2 {
                let e = (z[k * 2 + s] - t[k * 2 + s]) as f64;
                sq += e * e;
                // d/dz of sum_s w_s * mean_k e^2 / B
                let d = w[s] as f64 * 2.0 * e / 2.0 / 2.0;
                assert!((delta[k * 2 + s] as f64 - d).abs() < 1e-6);
            }
            expect += w[s] as f64 * sq / 2.0;
        }
        assert!((r.loss_sum - expect).abs() < 1e-6 && r.correct == 0);
        // weighted cross-entropy: each sample's gradient times its weight
        let logits = [1.0f32, 0.0, 2.0, 0.0];
        let (mut a, mut da) = (logits, [0.0f32; 4]);
        let (mut b, mut db) = (logits, [0.0f32; 4]);
        let ra = Loss::CrossEntropy.output(
            &mut a,
            2,
            2,
            BatchTarget::Classes(&[1, 0]),
            None,
            Some(&mut da),
        );
        let rb = Loss::CrossEntropy.output(
            &mut b,
            2,
            2,
            BatchTarget::Classes(&[1, 0]),
            Some(&[3.0, 0.0]),
            Some(&mut db),
        );
        for k in 0..2 {
            assert!((db[k * 2] - 3.0 * da[k * 2]).abs() < 1e-6 && db[k * 2 + 1] == 0.0);
        }
        assert!(rb.loss_sum < 3.0 * ra.loss_sum && rb.correct == ra.correct);
    }

    #[test]
    fn softmax_cross_entropy_matches_definition() {
        // c = 3 classes, b = 2 samples, feature-major
        let logits = [1.0f32, 0.0, 2.0, 0.0, 3.0, 0.0];
        let mut out = logits;
        let mut delta = [0.0f32; 6];
        let r = Loss::CrossEntropy.output(
            &mut out,
            3,
            2,
            BatchTarget::Classes(&[2, 1]),
            None,
            Some(&mut delta),
        );
        let mut expect = 0.0;
        for (s, y) in [(0usize, 2usize), (1, 1)] {
            let z: Vec<f64> = (0..3).map(|k| logits[k * 2 + s] as f64).collect();
            let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
            expect += lse - z[y];
            for k in 0..3 {
                let p = (z[k] - lse).exp();
                assert!((out[k * 2 + s] as f64 - p).abs() < 1e-6);
                let t = if k == y { 1.0 } else { 0.0 };
                assert!((delta[k * 2 + s] as f64 - (p - t) / 2.0).abs() < 1e-6);
            }
        }
        assert!((r.loss_sum - expect).abs() < 1e-6);
        assert_eq!(r.correct, 1); // sample 0 argmax is class 2 (correct), sample 1 argmax is 2 (label 1)
    }

    #[test]
    fn softmax_is_stable_for_large_logits() {
        let mut out = [1000.0f32, -1000.0];
        let r = Loss::CrossEntropy.output(&mut out, 2, 1, BatchTarget::Classes(&[0]), None, None);
        assert!(r.loss_sum.is_finite() && r.loss_sum < 1e-6);
        assert_eq!(out, [1.0, 0.0]);
    }

    #[test]
    fn mse_delta_is_gradient_of_mean_loss() {
        for sig in [false, true] {
            let loss = Loss::Mse { sigmoid: sig };
            let z = [0.3f32, -0.7, 1.1, 0.2];
            let labels = [1u32, 0];
            let mut out = z;
            let mut delta = [0.0f32; 4];
            loss.output(
                &mut out,
                2,
                2,
                BatchTarget::Classes(&labels),
                None,
                Some(&mut delta),
            );
            for i in 0..4 {
                let h = 1e-3f32;
                let f = |dz: f32| {
                    let mut o = z;
                    o[i] += dz;
                    loss.output(&mut o, 2, 2, BatchTarget::Classes(&labels), None, None)
                        .loss_sum
                        / 2.0
                };
                let fd = (f(h) - f(-h)) / (2.0 * h as f64);
                assert!(
                    (fd - delta[i] as f64).abs() < 1e-3,
                    "{sig} {i}: {fd} {}",
                    delta[i]
                );
            }
        }
    }
}
