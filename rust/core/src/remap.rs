//! Values moved from one topology of a layer onto another of the same shape.
//!
//! WASAP-SGD's parameter server changes the topology every server epoch,
//! while workers are still computing gradients on the previous one. Such a
//! stale gradient is applied by connection, not by position: the entry of a
//! connection that still exists goes to that connection's new position, the
//! entries of removed connections are dropped ("retain valid updates"), and
//! new connections get nothing (SPEC §6.3).

use crate::error::{invalid, Result};

/// The index structure of a layer's connections in CSC order: output `j`
/// owns `row_idx[col_ptr[j]..col_ptr[j + 1]]`, sorted, without duplicates
/// (the order of [`crate::SparseMatrix`]).
#[derive(Clone, Copy, Debug)]
pub struct Topology<'a> {
    pub col_ptr: &'a [usize],
    pub row_idx: &'a [u32],
}

impl Topology<'_> {
    fn check(&self, name: &str) -> Result<()> {
        let (ptr, nnz) = (self.col_ptr, self.row_idx.len());
        if ptr.is_empty() || ptr[0] != 0 || ptr[ptr.len() - 1] != nnz {
            invalid!(
                "{name}: the column pointers must run from 0 to the {nnz} connections, got {} pointers",
                ptr.len()
            );
        }
        if let Some(j) = ptr.windows(2).position(|w| w[0] > w[1]) {
            invalid!("{name}: column pointers decrease at output {j}");
        }
        Ok(())
    }
}

/// Writes into `out` (one entry per connection of `to`) the entry of `values`
/// (one per connection of `from`) for the same connection, or 0 where `from`
/// has no such connection. Returns how many entries of `values` were dropped
/// because `to` no longer has their connection.
///
/// Both topologies must have the same number of outputs; each column must be
/// sorted (checked on the way). O(nnz of both), one merge per output.
pub fn remap_values(
    from: Topology<'_>,
    values: &[f32],
    to: Topology<'_>,
    out: &mut [f32],
) -> Result<usize> {
    from.check("source topology")?;
    to.check("target topology")?;
    if from.col_ptr.len() != to.col_ptr.len() {
        invalid!(
            "the topologies have {} and {} outputs",
            from.col_ptr.len() - 1,
            to.col_ptr.len() - 1
        );
    }
    if values.len() != from.row_idx.len() {
        invalid!(
            "{} values for the {} connections of the source topology",
            values.len(),
            from.row_idx.len()
        );
    }
    if out.len() != to.row_idx.len() {
        invalid!(
            "output of {} entries for the {} connections of the target topology",
            out.len(),
            to.row_idx.len()
        );
    }
    let mut dropped = 0;
    for j in 0..to.col_ptr.len() - 1 {
        let (src, dst) = (
            from.col_ptr[j]..from.col_ptr[j + 1],
            to.col_ptr[j]..to.col_ptr[j + 1],
        );
        let (mut s, mut d) = (src.start, dst.start);
        while d < dst.end {
            let row = to.row_idx[d];
            if d > dst.start && to.row_idx[d - 1] >= row {
                invalid!("target topology: output {j} is not sorted by input");
            }
            while s < src.end && from.row_idx[s] < row {
                check_sorted(from.row_idx, s, src.start, j)?;
                dropped += 1;
                s += 1;
            }
            out[d] = if s < src.end && from.row_idx[s] == row {
                check_sorted(from.row_idx, s, src.start, j)?;
                s += 1;
                values[s - 1]
            } else {
                0.0
            };
            d += 1;
        }
        for s in s..src.end {
            check_sorted(from.row_idx, s, src.start, j)?;
            dropped += 1;
        }
    }
    Ok(dropped)
}

fn check_sorted(rows: &[u32], s: usize, start: usize, j: usize) -> Result<()> {
    if s > start && rows[s - 1] >= rows[s] {
        invalid!("source topology: output {j} is not sorted by input");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::{random_sparse, WeightInit};
    use crate::rng::Rng;
    use std::collections::HashMap;

    fn connections(t: Topology<'_>) -> Vec<(u32, usize)> {
        (0..t.col_ptr.len() - 1)
            .flat_map(|j| {
                t.row_idx[t.col_ptr[j]..t.col_ptr[j + 1]]
                    .iter()
                    .map(move |&i| (i, j))
            })
            .collect()
    }

    #[test]
    fn matches_a_lookup_by_connection() {
        let mut rng = Rng::new(5);
        for &(n_in, n_out, nnz_a, nnz_b) in &[(30, 20, 150, 170), (8, 3, 24, 5), (50, 1, 10, 40)] {
            let a = random_sparse(n_in, n_out, nnz_a, WeightInit::HeUniform, &mut rng).unwrap();
            let b = random_sparse(n_in, n_out, nnz_b, WeightInit::HeUniform, &mut rng).unwrap();
            let (ta, tb) = (
                Topology {
                    col_ptr: a.col_ptr(),
                    row_idx: a.row_idx(),
                },
                Topology {
                    col_ptr: b.col_ptr(),
                    row_idx: b.row_idx(),
                },
            );
            let by_conn: HashMap<_, _> = connections(ta).into_iter().zip(a.values()).collect();
            let mut out = vec![f32::NAN; b.nnz()];
            let dropped = remap_values(ta, a.values(), tb, &mut out).unwrap();
            let kept = connections(tb)
                .iter()
                .filter(|c| by_conn.contains_key(c))
                .count();
            assert_eq!(dropped, a.nnz() - kept);
            for (k, c) in connections(tb).iter().enumerate() {
                assert_eq!(
                    out[k],
                    by_conn.get(c).map_or(0.0, |&&v| v),
                    "connection {c:?}"
                );
            }
        }
    }

    #[test]
    fn same_topology_is_the_identity() {
        let mut rng = Rng::new(6);
        let a = random_sparse(40, 30, 300, WeightInit::HeUniform, &mut rng).unwrap();
        let t = Topology {
            col_ptr: a.col_ptr(),
            row_idx: a.row_idx(),
        };
        let mut out = vec![0.0; a.nnz()];
        assert_eq!(remap_values(t, a.values(), t, &mut out).unwrap(), 0);
        assert_eq!(out, a.values());
    }

    #[test]
    fn rejects_mismatched_or_unsorted_input() {
        let ptr = [0usize, 2, 3];
        let good = Topology {
            col_ptr: &ptr,
            row_idx: &[1, 4, 0],
        };
        let unsorted = Topology {
            col_ptr: &ptr,
            row_idx: &[4, 1, 0],
        };
        let other_shape = Topology {
            col_ptr: &[0, 3],
            row_idx: &[1, 4, 0],
        };
        let bad_ptr = Topology {
            col_ptr: &[0, 4, 3],
            row_idx: &[1, 4, 0],
        };
        let mut out = [0.0; 3];
        let v = [1.0, 2.0, 3.0];
        assert!(remap_values(unsorted, &v, good, &mut out).is_err());
        assert!(remap_values(good, &v, unsorted, &mut out).is_err());
        assert!(remap_values(good, &v, other_shape, &mut out).is_err());
        assert!(remap_values(bad_ptr, &v, good, &mut out).is_err());
        assert!(remap_values(good, &v[..2], good, &mut out).is_err());
        assert!(remap_values(good, &v, good, &mut out[..2]).is_err());
    }
}
