//! Retry timing for a device that went away (a webcam unplugged): quick first retries so a
//! replug is picked up at once, doubling up to a ceiling so a missing camera costs nothing.

/// Exponential backoff in nanoseconds on the caller's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial_ns: u64,
    max_ns: u64,
    current_ns: u64,
    failures: u32,
}

impl Backoff {
    pub fn new(initial_ns: u64, max_ns: u64) -> Self {
        let initial_ns = initial_ns.max(1);
        Backoff {
            initial_ns,
            max_ns: max_ns.max(initial_ns),
            current_ns: initial_ns,
            failures: 0,
        }
    }

    /// An attempt failed at `now_ns`: returns when to try next, and lengthens the wait.
    pub fn failed(&mut self, now_ns: u64) -> u64 {
        let retry_at = now_ns.saturating_add(self.current_ns);
        self.failures = self.failures.saturating_add(1);
        self.current_ns = self.current_ns.saturating_mul(2).min(self.max_ns);
        retry_at
    }

    /// An attempt succeeded: the next failure retries quickly again.
    pub fn succeeded(&mut self) {
        self.current_ns = self.initial_ns;
        self.failures = 0;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_ceiling_and_reset_on_success() {
        let mut b = Backoff::new(500, 4_000);
        let waits: Vec<u64> = (0..6).map(|_| b.failed(10_000) - 10_000).collect();
        assert_eq!(waits, [500, 1_000, 2_000, 4_000, 4_000, 4_000]);
        assert_eq!(b.failures(), 6);
        b.succeeded();
        assert_eq!(b.failed(0), 500);
    }
}
