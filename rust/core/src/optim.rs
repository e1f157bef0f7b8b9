//! The optimizers, on the stored connections only.
//!
//! - Momentum SGD with the papers' decoupled weight decay: `v ← μv − ηg`,
//!   `w ← w + v − λw` (λ neither scaled by η nor passed through the
//!   momentum). Nesterov: `w ← w + μv − ηg − λw` with the new `v`. Under a
//!   schedule, a step at rate `η_t` decays by `λ·η_t/η` (η the base rate):
//!   SGDW's schedule multiplier (Loshchilov & Hutter), so that a rate
//!   decayed towards 0 does not leave the decay to erase the weights. At the
//!   base rate the factor is exactly 1.
//! - Adam (Kingma & Ba): `m ← β₁m + (1−β₁)g'`, `v ← β₂v + (1−β₂)g'²`,
//!   `w ← w − η·m̂/(√v̂ + ε)` with the bias-corrected `m̂ = m/(1−β₁ᵗ)`,
//!   `v̂ = v/(1−β₂ᵗ)`; plain Adam adds the weight decay to the gradient
//!   (`g' = g + λw`), AdamW decouples it (`w ← w − η(m̂/(√v̂+ε) + λw)`).
//!
//! The first moment (SGD's momentum, Adam's `m`) lives in each layer's
//! `momentum`, Adam's second moment in its `second`; both stay aligned with
//! the connections through every topology change (new connections start at
//! zero). `t` counts the steps taken with this optimizer.

use rayon::prelude::*;

use crate::error::{invalid, Result};

/// The update rule and its own settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    Sgd {
        momentum: f32,
        nesterov: bool,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        eps: f32,
        decoupled: bool,
    },
}

/// The names [`Method::name`] gives and [`Optimizer`]'s callers use.
pub const OPTIMIZER_NAMES: [&str; 3] = ["sgd", "adam", "adamw"];

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Sgd { .. } => "sgd",
            Method::Adam {
                decoupled: false, ..
            } => "adam",
            Method::Adam {
                decoupled: true, ..
            } => "adamw",
        }
    }

    /// Whether the rule keeps a second moment per parameter.
    pub fn has_second_moment(&self) -> bool {
        matches!(self, Method::Adam { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Optimizer {
    pub method: Method,
    /// The base learning rate (a schedule gives each step its own).
    pub learning_rate: f32,
    pub weight_decay: f32,
    /// Weight decay on the biases too (the papers' choice; default true).
    pub bias_decay: bool,
}

/// Momentum SGD, the papers' optimizer (the name the rest of the crate uses).
pub type Sgd = Optimizer;

fn check_rate(learning_rate: f64, weight_decay: f64) -> Result<()> {
    if !(learning_rate.is_finite() && learning_rate > 0.0) {
        invalid!("learning_rate must be a positive finite number, got {learning_rate}");
    }
    if !(0.0..1.0).contains(&weight_decay) {
        invalid!("weight_decay must be in [0, 1), got {weight_decay}");
    }
    Ok(())
}

impl Optimizer {
    /// Momentum SGD.
    pub fn new(
        learning_rate: f64,
        momentum: f64,
        weight_decay: f64,
        nesterov: bool,
    ) -> Result<Self> {
        check_rate(learning_rate, weight_decay)?;
        if !(0.0..1.0).contains(&momentum) {
            invalid!("momentum must be in [0, 1), got {momentum}");
        }
        Ok(Optimizer {
            method: Method::Sgd {
                momentum: momentum as f32,
                nesterov,
            },
            learning_rate: learning_rate as f32,
            weight_decay: weight_decay as f32,
            bias_decay: true,
        })
    }

    /// Adam, or AdamW with `decoupled`.
    pub fn adam(
        learning_rate: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        decoupled: bool,
    ) -> Result<Self> {
        check_rate(learning_rate, weight_decay)?;
        for (name, b) in [("beta1", beta1), ("beta2", beta2)] {
            if !(0.0..1.0).contains(&b) {
                invalid!("{name} must be in [0, 1), got {b}");
            }
        }
        if !(eps.is_finite() && eps > 0.0) {
            invalid!("eps must be a positive finite number, got {eps}");
        }
        Ok(Optimizer {
            method: Method::Adam {
                beta1: beta1 as f32,
                beta2: beta2 as f32,
                eps: eps as f32,
                decoupled,
            },
            learning_rate: learning_rate as f32,
            weight_decay: weight_decay as f32,
            bias_decay: true,
        })
    }

    /// The same optimizer, with or without weight decay on the biases.
    pub fn with_bias_decay(self, bias_decay: bool) -> Self {
        Optimizer { bias_decay, ..self }
    }

    /// Updates weights `w` with their first moment `m` (and second `v` for
    /// Adam; empty for SGD) from the gradient `g`, at learning rate `lr` on
    /// the optimizer's step `t` (1 for the first).
    pub fn step(&self, lr: f32, t: u64, w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        self.update(lr, t, self.decay(lr, self.weight_decay), w, m, v, g);
    }

    /// [`Self::step`] for biases: without weight decay unless `bias_decay`.
    pub fn step_bias(
        &self,
        lr: f32,
        t: u64,
        b: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        g: &[f32],
    ) {
        let wd = if self.bias_decay {
            self.weight_decay
        } else {
            0.0
        };
        self.update(lr, t, self.decay(lr, wd), b, m, v, g);
    }

    /// The weight decay of a step at rate `lr`: SGD's follows the schedule's
    /// multiplier `lr / learning_rate` (1 at the base rate); Adam's is
    /// scaled by the rate in its update already.
    fn decay(&self, lr: f32, wd: f32) -> f32 {
        match self.method {
            Method::Sgd { .. } if lr != self.learning_rate => wd * (lr / self.learning_rate),
            _ => wd,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        lr: f32,
        t: u64,
        wd: f32,
        w: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        g: &[f32],
    ) {
        const CHUNK: usize = 1 << 14;
        match self.method {
            Method::Sgd {
                momentum: mu,
                nesterov,
            } => {
                w.par_chunks_mut(CHUNK)
                    .zip(m.par_chunks_mut(CHUNK))
                    .zip(g.par_chunks(CHUNK))
                    .for_each(|((w, m), g)| {
                        for ((w, m), &g) in w.iter_mut().zip(m.iter_mut()).zip(g) {
                            let vn = mu * *m - lr * g;
                            *m = vn;
                            let update = if nesterov { mu * vn - lr * g } else { vn };
                            *w = *w + update - wd * *w;
                        }
                    });
            }
            Method::Adam {
                beta1,
                beta2,
                eps,
                decoupled,
            } => {
                let t = t.max(1) as i32;
                // the bias corrections, in f64 so that β^t does not underflow early
                let c1 = (1.0 - (beta1 as f64).powi(t)) as f32;
                let c2 = (1.0 - (beta2 as f64).powi(t)) as f32;
                w.par_chunks_mut(CHUNK)
                    .zip(m.par_chunks_mut(CHUNK))
                    .zip(v.par_chunks_mut(CHUNK))
                    .zip(g.par_chunks(CHUNK))
                    .for_each(|(((w, m), v), g)| {
                        for (((w, m), v), &g) in
                            w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g)
                        {
                            let g = if decoupled { g } else { g + wd * *w };
                            *m = beta1 * *m + (1.0 - beta1) * g;
                            *v = beta2 * *v + (1.0 - beta2) * g * g;
                            let step = (*m / c1) / ((*v / c2).sqrt() + eps);
                            *w -= lr * if decoupled { step + wd * *w } else { step };
                        }
                    });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_papers_update() {
        let sgd = Sgd::new(0.1, 0.9, 0.01, false).unwrap();
        let (mut w, mut m) = (vec![1.0f32], vec![0.5f32]);
        sgd.step(0.1, 1, &mut w, &mut m, &mut [], &[2.0]);
        let vn = 0.9 * 0.5 - 0.1 * 2.0;
        assert!((m[0] - vn).abs() < 1e-7);
        assert!((w[0] - (1.0 + vn - 0.01 * 1.0)).abs() < 1e-7);

        let nag = Sgd::new(0.1, 0.9, 0.0, true).unwrap();
        let (mut w, mut m) = (vec![1.0f32], vec![0.5f32]);
        nag.step(0.1, 1, &mut w, &mut m, &mut [], &[2.0]);
        assert!((w[0] - (1.0 + 0.9 * vn - 0.1 * 2.0)).abs() < 1e-7);
    }

    #[test]
    fn adam_matches_its_definition() {
        for decoupled in [false, true] {
            let opt = Optimizer::adam(0.01, 0.9, 0.999, 1e-8, 0.1, decoupled).unwrap();
            let (mut w, mut m, mut v) = (vec![1.0f32], vec![0.0f32], vec![0.0f32]);
            let (mut rw, mut rm, mut rv) = (1.0f64, 0.0f64, 0.0f64);
            for t in 1..=3u64 {
                let g = 0.5 * t as f32;
                opt.step(0.01, t, &mut w, &mut m, &mut v, &[g]);
                let g = g as f64 + if decoupled { 0.0 } else { 0.1 * rw };
                rm = 0.9 * rm + 0.1 * g;
                rv = 0.999 * rv + 0.001 * g * g;
                let step = (rm / (1.0 - 0.9f64.powi(t as i32)))
                    / ((rv / (1.0 - 0.999f64.powi(t as i32))).sqrt() + 1e-8);
                rw -= 0.01 * (step + if decoupled { 0.1 * rw } else { 0.0 });
                assert!(
                    (w[0] as f64 - rw).abs() < 1e-6,
                    "{decoupled} {t}: {} vs {rw}",
                    w[0]
                );
            }
        }
    }

    #[test]
    fn sgds_decay_follows_the_schedules_multiplier() {
        let sgd = Sgd::new(0.1, 0.0, 0.01, false).unwrap();
        let (mut a, mut b) = (vec![1.0f32], vec![1.0f32]);
        sgd.step(0.1, 1, &mut a, &mut [0.0], &mut [], &[0.0]);
        sgd.step(0.025, 1, &mut b, &mut [0.0], &mut [], &[0.0]);
        assert_eq!(a[0], 0.99); // the base rate: exactly the papers' decay
        assert!((b[0] - (1.0 - 0.0025)).abs() < 1e-7);
    }

    #[test]
    fn biases_decay_only_when_asked() {
        let sgd = Sgd::new(0.1, 0.9, 0.01, false).unwrap();
        let (mut a, mut va) = (vec![1.0f32], vec![0.0f32]);
        let (mut b, mut vb) = (vec![1.0f32], vec![0.0f32]);
        sgd.step_bias(0.1, 1, &mut a, &mut va, &mut [], &[0.0]);
        sgd.with_bias_decay(false)
            .step_bias(0.1, 1, &mut b, &mut vb, &mut [], &[0.0]);
        assert_eq!((a[0], b[0]), (0.99, 1.0));
    }

    #[test]
    fn rejects_bad_hyper_parameters() {
        assert!(Sgd::new(0.0, 0.9, 0.0, false).is_err());
        assert!(Sgd::new(f64::NAN, 0.9, 0.0, false).is_err());
        assert!(Sgd::new(0.1, 1.0, 0.0, false).is_err());
        assert!(Sgd::new(0.1, 0.5, -1.0, false).is_err());
        assert!(Optimizer::adam(0.1, 1.0, 0.9, 1e-8, 0.0, false).is_err());
        assert!(Optimizer::adam(0.1, 0.9, 0.9, 0.0, 0.0, false).is_err());
        assert_eq!(
            Optimizer::adam(0.1, 0.9, 0.9, 1e-8, 0.0, true)
                .unwrap()
                .method
                .name(),
            "adamw"
        );
    }
}
