//! Hidden-layer activations, applied to one neuron's row of `B` pre-activations.
//!
//! All-ReLU, ReLU and LeakyReLU are one family: `f(z) = z` for `z ≥ 0` and
//! `slope · z` for `z < 0`. All-ReLU gives hidden layer k the slope `−α` when k
//! is odd and `+α` when k is even (SPEC §4); the caller resolves that per layer.

use crate::error::{invalid, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// Piecewise linear with `negative_slope` below zero: ReLU (0), LeakyReLU
    /// (α), or one All-ReLU layer (±α).
    Leaky {
        negative_slope: f32,
    },
    Tanh,
    Sigmoid,
}

impl Activation {
    pub fn parse(kind: &str, negative_slope: f32) -> Result<Self> {
        Ok(match kind {
            "leaky" => {
                if !negative_slope.is_finite() {
                    invalid!("activation slope must be finite, got {negative_slope}");
                }
                Activation::Leaky { negative_slope }
            }
            "relu" => Activation::Leaky {
                negative_slope: 0.0,
            },
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            other => invalid!(
                "unknown activation '{other}' (expected 'leaky', 'relu', 'tanh' or 'sigmoid')"
            ),
        })
    }

    /// (kind, slope) as accepted by [`Activation::parse`].
    pub fn describe(&self) -> (&'static str, f32) {
        match *self {
            Activation::Leaky { negative_slope } => ("leaky", negative_slope),
            Activation::Tanh => ("tanh", 0.0),
            Activation::Sigmoid => ("sigmoid", 0.0),
        }
    }

    /// In place: `z ← f(z)`.
    #[inline]
    pub fn apply(&self, z: &mut [f32]) {
        match *self {
            Activation::Leaky { negative_slope: s } => {
                for x in z {
                    *x = if *x >= 0.0 { *x } else { s * *x };
                }
            }
            Activation::Tanh => z.iter_mut().for_each(|x| *x = x.tanh()),
            Activation::Sigmoid => z.iter_mut().for_each(|x| *x = sigmoid(*x)),
        }
    }

    /// In place: `z ← f(z)` and `d ← f'(z)`.
    #[inline]
    pub fn apply_with_derivative(&self, z: &mut [f32], d: &mut [f32]) {
        match *self {
            Activation::Leaky { negative_slope: s } => {
                for (x, g) in z.iter_mut().zip(d.iter_mut()) {
                    let pos = *x >= 0.0;
                    *g = if pos { 1.0 } else { s };
                    *x = if pos { *x } else { s * *x };
                }
            }
            Activation::Tanh => {
                for (x, g) in z.iter_mut().zip(d.iter_mut()) {
                    *x = x.tanh();
                    *g = 1.0 - *x * *x;
                }
            }
            Activation::Sigmoid => {
                for (x, g) in z.iter_mut().zip(d.iter_mut()) {
                    *x = sigmoid(*x);
                    *g = *x * (1.0 - *x);
                }
            }
        }
    }
}

#[inline]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_relu_layer_is_v_shaped_with_negative_slope() {
        let act = Activation::Leaky {
            negative_slope: -0.5,
        };
        let mut z = [-2.0, 0.0, 3.0];
        let mut d = [0.0; 3];
        act.apply_with_derivative(&mut z, &mut d);
        assert_eq!(z, [1.0, 0.0, 3.0]);
        assert_eq!(d, [-0.5, 1.0, 1.0]);
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for act in [
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::Leaky {
                negative_slope: 0.3,
            },
        ] {
            for &x in &[-1.3f32, -0.2, 0.4, 2.0] {
                let h = 1e-3f32;
                let (mut a, mut b, mut z, mut d) = ([x + h], [x - h], [x], [0.0]);
                act.apply(&mut a);
                act.apply(&mut b);
                act.apply_with_derivative(&mut z, &mut d);
                let fd = (a[0] - b[0]) / (2.0 * h);
                assert!((fd - d[0]).abs() < 1e-2, "{act:?} at {x}: {fd} vs {}", d[0]);
            }
        }
    }

    #[test]
    fn sigmoid_is_stable_for_large_inputs() {
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
    }
}
