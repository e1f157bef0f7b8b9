//! Where a training epoch's time goes: wall-clock seconds per part of the
//! mini-batch step, summed while profiling is on
//! ([`crate::Network::set_profiling`]). Reading the clock between parts costs
//! a few tens of nanoseconds per part and batch; with profiling off nothing is
//! read.

use std::time::Instant;

/// Seconds of training spent in each part, summed over `batches`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// Mini-batches measured.
    pub batches: u64,
    /// The input batch transposed to feature-major order, and its targets.
    pub gather: f64,
    /// Per layer: the forward kernel, with the hidden layers' activation,
    /// derivative and dropout folded into it.
    pub forward: Vec<f64>,
    /// Softmax or squared error, and the output deltas.
    pub loss: f64,
    /// Per layer: the bias gradient (a sum over each delta row).
    pub bias: Vec<f64>,
    /// Per layer: the backward kernel (weight gradient at the connections
    /// and, below the first layer, the input deltas).
    pub backward: Vec<f64>,
    /// The optimizer's step over every connection and bias.
    pub step: f64,
    /// Activity tracking for recycling, blends, the midpoint step.
    pub other: f64,
}

impl Profile {
    /// A zeroed profile for `layers` layers.
    pub fn new(layers: usize) -> Self {
        Profile {
            forward: vec![0.0; layers],
            bias: vec![0.0; layers],
            backward: vec![0.0; layers],
            ..Profile::default()
        }
    }

    /// Total seconds measured.
    pub fn total(&self) -> f64 {
        let per_layer: f64 = [&self.forward, &self.bias, &self.backward]
            .iter()
            .flat_map(|v| v.iter())
            .sum();
        self.gather + self.loss + self.step + self.other + per_layer
    }
}

/// A stopwatch that charges the time since its last lap to a part of a
/// profile, or does nothing when there is no profile.
pub(crate) struct Laps<'a> {
    profile: Option<&'a mut Profile>,
    last: Option<Instant>,
}

impl<'a> Laps<'a> {
    pub(crate) fn new(profile: Option<&'a mut Profile>) -> Self {
        let last = profile.as_ref().map(|_| Instant::now());
        Laps { profile, last }
    }

    /// Adds the seconds since the last lap to the part `part` selects.
    #[inline]
    pub(crate) fn lap(&mut self, part: impl FnOnce(&mut Profile) -> &mut f64) {
        if let (Some(p), Some(last)) = (self.profile.as_deref_mut(), self.last.as_mut()) {
            let now = Instant::now();
            *part(p) += (now - *last).as_secs_f64();
            *last = now;
        }
    }

    /// Counts one more batch.
    pub(crate) fn batch(&mut self) {
        if let Some(p) = self.profile.as_deref_mut() {
            p.batches += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laps_charge_their_parts_and_nothing_without_a_profile() {
        let mut p = Profile::new(2);
        let mut laps = Laps::new(Some(&mut p));
        std::thread::sleep(std::time::Duration::from_millis(2));
        laps.lap(|p| &mut p.forward[1]);
        laps.lap(|p| &mut p.step);
        laps.batch();
        assert_eq!(p.batches, 1);
        assert!(p.forward[1] > 0.0 && p.forward[0] == 0.0);
        assert!(p.total() >= p.forward[1] + p.step);

        let mut off = Laps::new(None);
        off.lap(|p| &mut p.gather);
        off.batch();
    }
}
