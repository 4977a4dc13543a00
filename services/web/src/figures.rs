//! The web service's own figures, kept in atomics by the threads that know them and read for
//! `/metrics` and the status line.

use std::sync::atomic::{AtomicU64, Ordering};

use keymash_watch::metrics::WebFigures;

/// Counters of the service (clients and viewers now are counted elsewhere, by their guards).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Connections answered 503 because `web.max_clients` were connected.
    pub(crate) refused: AtomicU64,
    /// Connections dropped because they took no data for `web.stall_timeout_ms` (or sent no
    /// whole request within it).
    pub(crate) stalled: AtomicU64,
    /// Pictures encoded.
    pub(crate) encoded: AtomicU64,
    /// Time spent encoding them, µs.
    pub(crate) encode_us: AtomicU64,
}

impl Counters {
    pub(crate) fn count_encode(&self, micros: u64) {
        self.encoded.fetch_add(1, Ordering::Relaxed);
        self.encode_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// The figures for `/metrics`, with the clients and viewers connected now.
    pub(crate) fn figures(&self, clients: u64, stream_viewers: u64) -> WebFigures {
        let encoded = self.encoded.load(Ordering::Relaxed);
        let encode_us = self.encode_us.load(Ordering::Relaxed);
        WebFigures {
            clients,
            stream_viewers,
            refused_total: self.refused.load(Ordering::Relaxed),
            stalled_total: self.stalled.load(Ordering::Relaxed),
            jpeg_encoded_total: encoded,
            jpeg_encode_ms: if encoded == 0 {
                0.0
            } else {
                encode_us as f64 / encoded as f64 / 1e3
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encode_time_is_the_mean_over_every_picture() {
        let counters = Counters::default();
        assert_eq!(counters.figures(0, 0).jpeg_encode_ms, 0.0);
        counters.count_encode(2_000);
        counters.count_encode(4_000);
        counters.refused.fetch_add(3, Ordering::Relaxed);
        let figures = counters.figures(5, 2);
        assert_eq!(figures.jpeg_encoded_total, 2);
        assert!((figures.jpeg_encode_ms - 3.0).abs() < 1e-9);
        assert_eq!(
            (
                figures.clients,
                figures.stream_viewers,
                figures.refused_total
            ),
            (5, 2, 3)
        );
    }
}
