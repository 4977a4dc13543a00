//! Percentiles over a sliding window of recent samples (encode time, latency), for the
//! statistics cell: the p99 of the last few seconds says more about a live stage than a mean.

use std::collections::VecDeque;

/// The last `capacity` samples and their quantiles.
#[derive(Debug, Clone)]
pub struct Percentiles {
    samples: VecDeque<f64>,
    capacity: usize,
    sorted: Vec<f64>,
}

impl Percentiles {
    /// A window of `capacity` samples (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Percentiles {
            samples: VecDeque::with_capacity(capacity),
            capacity,
            sorted: Vec::with_capacity(capacity),
        }
    }

    pub fn record(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(value);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `q` quantile (0.0..=1.0, nearest rank) of the window, `None` while it is empty.
    pub fn quantile(&mut self, q: f64) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        self.sorted.clear();
        self.sorted.extend(self.samples.iter().copied());
        self.sorted.sort_by(f64::total_cmp);
        nearest_rank(&self.sorted, q)
    }

    pub fn max(&self) -> Option<f64> {
        self.samples.iter().copied().max_by(f64::total_cmp)
    }
}

/// The `q` quantile (0.0..=1.0) of samples sorted in ascending order, by the nearest-rank
/// method (always one of the samples); `None` for no samples. The one definition of p50/p99
/// for the status window, `keymash codec roundtrip` and every bench.
pub fn nearest_rank<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut p = Percentiles::new(1000);
        assert_eq!(p.quantile(0.5), None);
        for v in (1..=100).rev() {
            p.record(f64::from(v));
        }
        let cases = [(0.0, 1.0), (0.5, 50.0), (0.99, 99.0), (1.0, 100.0)];
        for (q, expected) in cases {
            assert_eq!(p.quantile(q), Some(expected), "q {q}");
        }
        assert_eq!(p.max(), Some(100.0));
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut p = Percentiles::new(3);
        for v in [100.0, 1.0, 2.0, 3.0, f64::NAN] {
            p.record(v);
        }
        assert_eq!(p.len(), 3);
        assert_eq!(p.max(), Some(3.0));
    }
}
