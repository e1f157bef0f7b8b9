//! Momentum SGD on the stored connections, with the papers' decoupled weight
//! decay: `v ← μv − ηg`, `w ← w + v − λw` (λ neither scaled by η nor passed
//! through the momentum). Nesterov: `w ← w + μv − ηg − λw` with the new `v`.

use rayon::prelude::*;

use crate::error::{invalid, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub learning_rate: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
    /// Weight decay on the biases too (the papers' choice; default true).
    pub bias_decay: bool,
}

impl Sgd {
    pub fn new(
        learning_rate: f64,
        momentum: f64,
        weight_decay: f64,
        nesterov: bool,
    ) -> Result<Self> {
        if !(learning_rate.is_finite() && learning_rate > 0.0) {
            invalid!("learning_rate must be a positive finite number, got {learning_rate}");
        }
        if !(0.0..1.0).contains(&momentum) {
            invalid!("momentum must be in [0, 1), got {momentum}");
        }
        if !(0.0..1.0).contains(&weight_decay) {
            invalid!("weight_decay must be in [0, 1), got {weight_decay}");
        }
        Ok(Sgd {
            learning_rate: learning_rate as f32,
            momentum: momentum as f32,
            weight_decay: weight_decay as f32,
            nesterov,
            bias_decay: true,
        })
    }

    /// The same optimizer, with or without weight decay on the biases.
    pub fn with_bias_decay(self, bias_decay: bool) -> Self {
        Sgd { bias_decay, ..self }
    }

    /// Updates biases `b` and their momentum `v` in place: `step`, without
    /// weight decay unless `bias_decay`.
    pub fn step_bias(&self, b: &mut [f32], v: &mut [f32], g: &[f32]) {
        if self.bias_decay {
            self.step(b, v, g);
        } else {
            Sgd {
                weight_decay: 0.0,
                ..*self
            }
            .step(b, v, g);
        }
    }

    /// Updates `w` and its momentum `v` in place from the gradient `g`.
    pub fn step(&self, w: &mut [f32], v: &mut [f32], g: &[f32]) {
        const CHUNK: usize = 1 << 14;
        let (lr, mu, wd, nesterov) = (
            self.learning_rate,
            self.momentum,
            self.weight_decay,
            self.nesterov,
        );
        w.par_chunks_mut(CHUNK)
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|((w, v), g)| {
                for ((w, v), &g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
                    let vn = mu * *v - lr * g;
                    *v = vn;
                    let update = if nesterov { mu * vn - lr * g } else { vn };
                    *w = *w + update - wd * *w;
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_papers_update() {
        let sgd = Sgd::new(0.1, 0.9, 0.01, false).unwrap();
        let (mut w, mut v) = (vec![1.0f32], vec![0.5f32]);
        sgd.step(&mut w, &mut v, &[2.0]);
        let vn = 0.9 * 0.5 - 0.1 * 2.0;
        assert!((v[0] - vn).abs() < 1e-7);
        assert!((w[0] - (1.0 + vn - 0.01 * 1.0)).abs() < 1e-7);

        let nag = Sgd::new(0.1, 0.9, 0.0, true).unwrap();
        let (mut w, mut v) = (vec![1.0f32], vec![0.5f32]);
        nag.step(&mut w, &mut v, &[2.0]);
        assert!((w[0] - (1.0 + 0.9 * vn - 0.1 * 2.0)).abs() < 1e-7);
    }

    #[test]
    fn biases_decay_only_when_asked() {
        let sgd = Sgd::new(0.1, 0.9, 0.01, false).unwrap();
        let (mut a, mut va) = (vec![1.0f32], vec![0.0f32]);
        let (mut b, mut vb) = (vec![1.0f32], vec![0.0f32]);
        sgd.step_bias(&mut a, &mut va, &[0.0]);
        sgd.with_bias_decay(false)
            .step_bias(&mut b, &mut vb, &[0.0]);
        assert_eq!((a[0], b[0]), (0.99, 1.0));
    }

    #[test]
    fn rejects_bad_hyper_parameters() {
        assert!(Sgd::new(0.0, 0.9, 0.0, false).is_err());
        assert!(Sgd::new(f64::NAN, 0.9, 0.0, false).is_err());
        assert!(Sgd::new(0.1, 1.0, 0.0, false).is_err());
        assert!(Sgd::new(0.1, 0.5, -1.0, false).is_err());
    }
}
