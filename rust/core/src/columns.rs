//! The recycling state of a network as named, flat columns of numbers: the
//! format checkpoints store it in (one array per column), written and read
//! here so that it is checked under `cargo test` and Miri, not in the glue.
//!
//! Variable-length parts are stored flat with a column of their lengths:
//! `protected_ids` cut by `protected_counts` (one count per hidden layer),
//! each blend's weight and bias entries cut by `blend_weights` and
//! `blend_biases`, the activity sums cut by the hidden layers' widths.

use std::collections::HashMap;

use crate::error::{CoreError, Result};
use crate::recycle::{Activity, RecyclingState, SavedBlend};

/// One column of numbers.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    Int(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// The kind of numbers a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    F32,
    F64,
}

/// Every column of the format and its kind, in the order they are written.
pub const RECYCLING_COLUMNS: [(&str, Kind); 16] = [
    ("protected_counts", Kind::Int),
    ("protected_ids", Kind::Int),
    ("blend_steps", Kind::Int),
    ("blend_weights", Kind::Int),
    ("blend_biases", Kind::Int),
    ("weight_layer", Kind::Int),
    ("weight_row", Kind::Int),
    ("weight_col", Kind::Int),
    ("weight_delta", Kind::F32),
    ("bias_layer", Kind::Int),
    ("bias_neuron", Kind::Int),
    ("bias_delta", Kind::F32),
    ("activity_samples", Kind::Int),
    ("activity_decay", Kind::F64),
    ("activity_sum_abs", Kind::F64),
    ("activity_utility", Kind::F64),
];

fn bad(what: impl std::fmt::Display) -> CoreError {
    CoreError::InvalidInput(format!("recycling state: {what}"))
}

fn ints<T: TryInto<i64> + Copy>(v: impl IntoIterator<Item = T>) -> Column {
    Column::Int(
        v.into_iter()
            .map(|x| x.try_into().unwrap_or(i64::MAX))
            .collect(),
    )
}

impl RecyclingState {
    /// The state as the columns of [`RECYCLING_COLUMNS`], in that order.
    pub fn to_columns(&self) -> Vec<(&'static str, Column)> {
        let weights: Vec<_> = self
            .blends
            .iter()
            .flat_map(|b| b.weights.iter().copied())
            .collect();
        let biases: Vec<_> = self
            .blends
            .iter()
            .flat_map(|b| b.biases.iter().copied())
            .collect();
        let act = self.activity.as_ref();
        let concat = |f: fn(&Activity) -> &Vec<Vec<f64>>| {
            Column::F64(act.map_or(Vec::new(), |a| f(a).concat()))
        };
        vec![
            (
                "protected_counts",
                ints(self.protected.iter().map(Vec::len)),
            ),
            (
                "protected_ids",
                ints(self.protected.iter().flatten().copied()),
            ),
            (
                "blend_steps",
                ints(self.blends.iter().map(|b| b.steps_left)),
            ),
            (
                "blend_weights",
                ints(self.blends.iter().map(|b| b.weights.len())),
            ),
            (
                "blend_biases",
                ints(self.blends.iter().map(|b| b.biases.len())),
            ),
            ("weight_layer", ints(weights.iter().map(|e| e.0))),
            ("weight_row", ints(weights.iter().map(|e| e.1))),
            ("weight_col", ints(weights.iter().map(|e| e.2))),
            (
                "weight_delta",
                Column::F32(weights.iter().map(|e| e.3).collect()),
            ),
            ("bias_layer", ints(biases.iter().map(|e| e.0))),
            ("bias_neuron", ints(biases.iter().map(|e| e.1))),
            (
                "bias_delta",
                Column::F32(biases.iter().map(|e| e.2).collect()),
            ),
            ("activity_samples", ints(act.map(|a| a.samples))),
            (
                "activity_decay",
                Column::F64(act.and_then(|a| a.decay).into_iter().collect()),
            ),
            ("activity_sum_abs", concat(|a| &a.sum_abs)),
            ("activity_utility", concat(|a| &a.utility)),
        ]
    }

    /// The state held by `columns` for a network whose hidden layers have
    /// `widths` neurons. Every column must be there with its kind (others
    /// are ignored); lengths and counts must agree and every number fit its
    /// field. The network itself checks the
    /// ids and positions against its layers when it takes the state.
    pub fn from_columns(columns: &HashMap<String, Column>, widths: &[usize]) -> Result<Self> {
        let table = Table(columns);
        let protected = split(
            table.indices::<u32>("protected_ids")?,
            &table.ints("protected_counts")?,
            "protected_ids",
        )?;
        let steps: Vec<u32> = table.indices("blend_steps")?;
        let (layers, rows, cols) = (
            table.indices::<usize>("weight_layer")?,
            table.indices::<u32>("weight_row")?,
            table.indices::<u32>("weight_col")?,
        );
        let deltas = table.f32s("weight_delta")?;
        if [rows.len(), cols.len(), deltas.len()] != [layers.len(); 3] {
            return Err(bad("the weight_* columns differ in length"));
        }
        let weights: Vec<_> = (0..layers.len())
            .map(|i| (layers[i], rows[i], cols[i], deltas[i]))
            .collect();
        let (layers, neurons) = (
            table.indices::<usize>("bias_layer")?,
            table.indices::<u32>("bias_neuron")?,
        );
        let deltas = table.f32s("bias_delta")?;
        if [neurons.len(), deltas.len()] != [layers.len(); 2] {
            return Err(bad("the bias_* columns differ in length"));
        }
        let biases: Vec<_> = (0..layers.len())
            .map(|i| (layers[i], neurons[i], deltas[i]))
            .collect();
        let weights = split(weights, &table.ints("blend_weights")?, "weight_*")?;
        let biases = split(biases, &table.ints("blend_biases")?, "bias_*")?;
        if weights.len() != steps.len() || biases.len() != steps.len() {
            return Err(bad(
                "blend_steps, blend_weights and blend_biases differ in length",
            ));
        }
        let blends = steps
            .into_iter()
            .zip(weights.into_iter().zip(biases))
            .map(|(steps_left, (weights, biases))| SavedBlend {
                steps_left,
                weights,
                biases,
            })
            .collect();
        let samples: Vec<u64> = table.indices("activity_samples")?;
        let decay = table.f64s("activity_decay")?;
        let activity = match (samples.as_slice(), decay.as_slice()) {
            ([], []) => {
                for key in ["activity_sum_abs", "activity_utility"] {
                    if !table.f64s(key)?.is_empty() {
                        return Err(bad(format!("'{key}' has values but activity is off")));
                    }
                }
                None
            }
            ([n], d) if d.len() <= 1 => {
                let per_layer: Vec<i64> = widths.iter().map(|&w| w as i64).collect();
                Some(Activity {
                    samples: *n,
                    sum_abs: split(
                        table.f64s("activity_sum_abs")?,
                        &per_layer,
                        "activity_sum_abs",
                    )?,
                    decay: d.first().copied(),
                    utility: split(
                        table.f64s("activity_utility")?,
                        &per_layer,
                        "activity_utility",
                    )?,
                })
            }
            _ => {
                return Err(bad(
                    "activity_samples and activity_decay hold more than one value",
                ))
            }
        };
        Ok(RecyclingState {
            protected,
            blends,
            activity,
        })
    }
}

struct Table<'a>(&'a HashMap<String, Column>);

impl Table<'_> {
    fn get(&self, key: &str) -> Result<&Column> {
        self.0
            .get(key)
            .ok_or_else(|| bad(format!("'{key}' is missing")))
    }

    fn ints(&self, key: &str) -> Result<Vec<i64>> {
        match self.get(key)? {
            Column::Int(v) => Ok(v.clone()),
            _ => Err(bad(format!("'{key}' must hold integers"))),
        }
    }

    /// Non-negative integers of `key`, each converted to `T` (checked).
    fn indices<T: TryFrom<i64>>(&self, key: &str) -> Result<Vec<T>> {
        self.ints(key)?
            .into_iter()
            .map(|v| T::try_from(v).map_err(|_| bad(format!("'{key}' holds {v}, out of range"))))
            .collect()
    }

    fn f32s(&self, key: &str) -> Result<Vec<f32>> {
        match self.get(key)? {
            Column::F32(v) => Ok(v.clone()),
            _ => Err(bad(format!("'{key}' must hold float32 numbers"))),
        }
    }

    fn f64s(&self, key: &str) -> Result<Vec<f64>> {
        match self.get(key)? {
            Column::F64(v) => Ok(v.clone()),
            _ => Err(bad(format!("'{key}' must hold float64 numbers"))),
        }
    }
}

/// `values` cut into consecutive groups of `counts` entries.
fn split<T>(values: Vec<T>, counts: &[i64], what: &str) -> Result<Vec<Vec<T>>> {
    let total = counts.iter().try_fold(0usize, |acc, &c| {
        usize::try_from(c).ok().and_then(|c| acc.checked_add(c))
    });
    if total != Some(values.len()) {
        return Err(bad(format!(
            "{what} holds {} entries but its counts add up to {total:?}",
            values.len()
        )));
    }
    let mut it = values.into_iter();
    Ok(counts
        .iter()
        .map(|&c| it.by_ref().take(c as usize).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> RecyclingState {
        RecyclingState {
            protected: vec![vec![1, 4], vec![]],
            blends: vec![
                SavedBlend {
                    steps_left: 3,
                    weights: vec![(0, 2, 1, 0.5), (1, 1, 0, -0.25)],
                    biases: vec![(0, 1, 0.125)],
                },
                SavedBlend {
                    steps_left: 1,
                    weights: vec![],
                    biases: vec![(1, 0, 2.0)],
                },
            ],
            activity: Some(Activity {
                samples: 7,
                sum_abs: vec![vec![1.0; 5], vec![2.0; 3]],
                decay: Some(0.99),
                utility: vec![vec![0.5; 5], vec![0.25; 3]],
            }),
        }
    }

    fn table(s: &RecyclingState) -> HashMap<String, Column> {
        s.to_columns()
            .into_iter()
            .map(|(k, c)| (k.to_string(), c))
            .collect()
    }

    #[test]
    fn columns_round_trip() {
        for s in [
            state(),
            RecyclingState {
                protected: vec![vec![], vec![]],
                ..Default::default()
            },
        ] {
            let cols = s.to_columns();
            let names: Vec<_> = cols.iter().map(|(k, _)| *k).collect();
            assert_eq!(names, RECYCLING_COLUMNS.map(|(k, _)| k));
            for ((_, c), (_, kind)) in cols.iter().zip(RECYCLING_COLUMNS) {
                let k = match c {
                    Column::Int(_) => Kind::Int,
                    Column::F32(_) => Kind::F32,
                    Column::F64(_) => Kind::F64,
                };
                assert_eq!(k, kind);
            }
            assert_eq!(
                RecyclingState::from_columns(&table(&s), &[5, 3]).unwrap(),
                s
            );
        }
    }

    #[test]
    fn unknown_columns_are_ignored() {
        let mut t = table(&state());
        t.insert("later_addition".into(), Column::Int(vec![1, 2]));
        assert_eq!(RecyclingState::from_columns(&t, &[5, 3]).unwrap(), state());
    }

    #[test]
    fn damaged_columns_are_refused_with_their_name() {
        let cases: Vec<(&str, Column, &str)> = vec![
            (
                "protected_counts",
                Column::Int(vec![2, 1]),
                "protected_ids holds 2 entries",
            ),
            (
                "protected_counts",
                Column::Int(vec![-1, 3]),
                "counts add up to None",
            ),
            (
                "protected_ids",
                Column::Int(vec![1, -4]),
                "'protected_ids' holds -4",
            ),
            (
                "weight_row",
                Column::Int(vec![2]),
                "weight_* columns differ",
            ),
            (
                "weight_col",
                Column::Int(vec![2, 1 << 40]),
                "'weight_col' holds 1099511627776",
            ),
            (
                "weight_delta",
                Column::F64(vec![0.5, 0.25]),
                "'weight_delta' must hold float32",
            ),
            (
                "blend_biases",
                Column::Int(vec![1]),
                "bias_* holds 2 entries",
            ),
            ("blend_steps", Column::Int(vec![3]), "differ in length"),
            (
                "activity_samples",
                Column::Int(vec![7, 8]),
                "more than one value",
            ),
            (
                "activity_sum_abs",
                Column::F64(vec![1.0; 7]),
                "activity_sum_abs holds 7 entries",
            ),
        ];
        for (key, column, message) in cases {
            let mut t = table(&state());
            t.insert(key.to_string(), column);
            let err = RecyclingState::from_columns(&t, &[5, 3])
                .unwrap_err()
                .to_string();
            assert!(err.contains(message), "{key}: {err}");
        }
        let mut t = table(&state());
        t.remove("bias_delta");
        let err = RecyclingState::from_columns(&t, &[5, 3])
            .unwrap_err()
            .to_string();
        assert!(err.contains("'bias_delta' is missing"), "{err}");
        let mut t = table(&RecyclingState {
            protected: vec![vec![]],
            ..Default::default()
        });
        t.insert("activity_utility".into(), Column::F64(vec![1.0]));
        let err = RecyclingState::from_columns(&t, &[1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("has values but activity is off"), "{err}");
    }
}
