//! Values moved from one topology of a layer onto another of the same shape.
//!
//! WASAP-SGD's parameter server changes the topology every server epoch,
//! while workers are still computing gradients on the previous one. Such a
//! stale gradient is applied by connection, not by position: the entry of a
//! connection that still exists goes to that connection's new position, the
//! entries of removed connections are dropped ("retain valid updates"), and
//! new connections get nothing (SPEC §6.3).
//!
//! At the end of WASAP-SGD the server averages the workers' replicas, whose
//! topologies diverged under local SET, over the union of their connections
//! and prunes the result back to the target size ([`union_average`], §6.5).

use crate::error::{invalid, Result};
use crate::topology::closest_to_zero;

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

/// One layer averaged over several replicas, in CSC order.
#[derive(Clone, Debug, PartialEq)]
pub struct Averaged {
    pub col_ptr: Vec<usize>,
    pub row_idx: Vec<u32>,
    pub values: Vec<f32>,
    /// Connections in the union, before pruning back to the target.
    pub union_nnz: usize,
}

/// Averages `K` replicas of a layer over the union of their connections (a
/// connection a replica lacks counts as 0 there), then removes the averaged
/// connections closest to zero, per sign as SET does, until `target_nnz`
/// remain (fewer only if the union is smaller). Connections that few replicas
/// have are diluted by the average and tend to go.
///
/// Every replica must have `n_in` inputs, the same outputs and sorted
/// columns. Sums run in replica order, so the result does not depend on
/// timing. O(union · log K) time, O(union) memory.
pub fn union_average(
    parts: &[(Topology<'_>, &[f32])],
    n_in: usize,
    target_nnz: usize,
) -> Result<Averaged> {
    let Some((first, _)) = parts.first() else {
        invalid!("no replicas to average");
    };
    let n_out = first.col_ptr.len().saturating_sub(1);
    for (r, (t, v)) in parts.iter().enumerate() {
        t.check(&format!("replica {r}"))?;
        if t.col_ptr.len() != n_out + 1 {
            invalid!(
                "replica {r} has {} outputs, replica 0 has {n_out}",
                t.col_ptr.len() - 1
            );
        }
        if v.len() != t.row_idx.len() {
            invalid!(
                "replica {r}: {} values for {} connections",
                v.len(),
                t.row_idx.len()
            );
        }
        for j in 0..n_out {
            let rows = &t.row_idx[t.col_ptr[j]..t.col_ptr[j + 1]];
            if rows.windows(2).any(|w| w[0] >= w[1]) {
                invalid!("replica {r}: output {j} is not sorted by input");
            }
            if rows.last().is_some_and(|&i| i as usize >= n_in) {
                invalid!("replica {r}: output {j} has an input index beyond {n_in} inputs");
            }
        }
    }
    let k = parts.len() as f32;
    let mut col_ptr = Vec::with_capacity(n_out + 1);
    col_ptr.push(0);
    let (mut row_idx, mut values) = (Vec::new(), Vec::new());
    let mut column: Vec<(u32, usize, f32)> = Vec::new();
    for j in 0..n_out {
        column.clear();
        for (r, (t, v)) in parts.iter().enumerate() {
            let range = t.col_ptr[j]..t.col_ptr[j + 1];
            column.extend(
                t.row_idx[range.clone()]
                    .iter()
                    .zip(&v[range])
                    .map(|(&i, &x)| (i, r, x)),
            );
        }
        column.sort_unstable_by_key(|&(i, r, _)| (i, r));
        for &(i, _, x) in &column {
            if row_idx.len() > col_ptr[j] && row_idx.last() == Some(&i) {
                *values.last_mut().unwrap() += x;
            } else {
                row_idx.push(i);
                values.push(x);
            }
        }
        col_ptr.push(row_idx.len());
    }
    for v in &mut values {
        *v /= k;
    }
    let union_nnz = values.len();
    if union_nnz > target_nnz {
        let gone = closest_to_zero(&values, 0.0, Some(union_nnz - target_nnz), None).mask;
        let mut k = 0;
        for j in 0..n_out {
            let range = col_ptr[j]..col_ptr[j + 1];
            col_ptr[j] = k;
            for s in range {
                if !gone[s] {
                    row_idx[k] = row_idx[s];
                    values[k] = values[s];
                    k += 1;
                }
            }
        }
        col_ptr[n_out] = k;
        row_idx.truncate(k);
        values.truncate(k);
    }
    Ok(Averaged {
        col_ptr,
        row_idx,
        values,
        union_nnz,
    })
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

    #[test]
    fn union_average_matches_a_dense_reference_and_keeps_the_sign_balance() {
        let mut rng = Rng::new(7);
        let (n_in, n_out, nnz) = (25, 12, 60usize);
        let reps: Vec<_> = (0..3)
            .map(|_| {
                random_sparse(n_in, n_out, nnz as u64, WeightInit::HeUniform, &mut rng).unwrap()
            })
            .collect();
        let parts: Vec<_> = reps
            .iter()
            .map(|m| {
                (
                    Topology {
                        col_ptr: m.col_ptr(),
                        row_idx: m.row_idx(),
                    },
                    m.values(),
                )
            })
            .collect();
        let mut dense = vec![0.0f32; n_in * n_out];
        let mut present = vec![false; n_in * n_out];
        for (t, v) in &parts {
            for (k, (i, j)) in connections(*t).into_iter().enumerate() {
                dense[j * n_in + i as usize] += v[k];
                present[j * n_in + i as usize] = true;
            }
        }
        let union: Vec<f32> = (0..n_in * n_out)
            .filter(|&p| present[p])
            .map(|p| dense[p] / 3.0)
            .collect();
        let avg = union_average(&parts, n_in, nnz).unwrap();
        assert_eq!(avg.union_nnz, union.len());
        assert_eq!(avg.values.len(), nnz);
        let t = Topology {
            col_ptr: &avg.col_ptr,
            row_idx: &avg.row_idx,
        };
        t.check("average").unwrap();
        for (k, (i, j)) in connections(t).into_iter().enumerate() {
            let want = dense[j * n_in + i as usize] / 3.0;
            assert!((avg.values[k] - want).abs() < 1e-6, "connection ({i}, {j})");
        }
        // what went is closest to zero within its sign, and the signs keep their shares
        let (pos_u, neg_u): (Vec<f32>, Vec<f32>) = union.iter().partition(|&&v| v >= 0.0);
        let kept_pos = avg.values.iter().filter(|&&v| v >= 0.0).count();
        let want_pos = pos_u.len()
            - ((union.len() - nnz) as f64 * pos_u.len() as f64 / union.len() as f64).round()
                as usize;
        assert_eq!(kept_pos, want_pos);
        let min_kept_pos = avg
            .values
            .iter()
            .filter(|&&v| v >= 0.0)
            .fold(f32::MAX, |a, &b| a.min(b));
        let max_kept_neg = avg
            .values
            .iter()
            .filter(|&&v| v < 0.0)
            .fold(f32::MIN, |a, &b| a.max(b));
        let removed_pos = pos_u.len() - kept_pos;
        let removed_neg = neg_u.len() - (nnz - kept_pos);
        assert_eq!(
            pos_u.iter().filter(|&&v| v < min_kept_pos).count(),
            removed_pos
        );
        assert_eq!(
            neg_u.iter().filter(|&&v| v > max_kept_neg).count(),
            removed_neg
        );
    }

    #[test]
    fn union_average_of_identical_replicas_is_the_replica() {
        let mut rng = Rng::new(8);
        let a = random_sparse(20, 10, 50, WeightInit::HeUniform, &mut rng).unwrap();
        let t = Topology {
            col_ptr: a.col_ptr(),
            row_idx: a.row_idx(),
        };
        let avg = union_average(&[(t, a.values()), (t, a.values())], 20, 50).unwrap();
        assert_eq!(avg.union_nnz, 50);
        assert_eq!(
            (&avg.col_ptr[..], &avg.row_idx[..]),
            (a.col_ptr(), a.row_idx())
        );
        assert_eq!(avg.values, a.values());
        assert!(union_average(&[], 20, 50).is_err());
        assert!(union_average(&[(t, &a.values()[1..])], 20, 50).is_err());
        assert!(union_average(&[(t, a.values())], 5, 50).is_err());
    }
}
