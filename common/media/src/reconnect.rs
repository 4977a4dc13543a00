//! When to look for a camera again, by what failed.
//!
//! Two kinds of failure call for different retries:
//!
//! - The camera is **absent**: its node does not exist or no longer answers (`open` gives
//!   ENOENT, ENODEV or ENXIO, a stream gives ENODEV after a USB disconnect, discovery finds no
//!   capture node). Looking again costs one failed `open`, so capture looks every
//!   [`ABSENT_LOOK_NS`] for as long as it takes, without growing waits: a replug is picked up
//!   within that interval, whenever it happens.
//! - The camera is there but **refuses** (EBUSY, EACCES, a format or control it will not take,
//!   a stream error, no frame for seconds): retrying at once would only fail again, so the waits
//!   grow ([`Backoff`]) and a broken camera does not spin.
//!
//! [`Reconnect`] holds that decision and what the status line says about it (how long the
//! camera has been unusable, how many attempts failed); the camera code feeds it failures and
//! whole frames, with `now_ns` as a parameter.

use crate::Backoff;

/// How often an absent camera is looked for: a replug is noticed within this, and a missing
/// camera costs four failed `open` calls a second.
pub const ABSENT_LOOK_NS: u64 = 250_000_000;
/// The first wait after a refusal, doubled at each further one ...
pub const REFUSED_FIRST_NS: u64 = 500_000_000;
/// ... up to this.
pub const REFUSED_MAX_NS: u64 = 8_000_000_000;

/// Why the camera cannot be used, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Nothing there to open (unplugged, or not yet re-enumerated after a replug).
    Absent,
    /// There, but refusing or misbehaving.
    Refused,
}

impl Unusable {
    /// Classifies a failed call on the camera by its `errno`; `None` for a failure that has no
    /// errno (a format the camera does not offer, frames that never come), which the camera
    /// answered, so it is there.
    ///
    /// ENOENT: the node (or the udev symlink to it) does not exist. ENODEV: the node exists but
    /// its device is gone (a descriptor opened before a USB disconnect, or a node being torn
    /// down). ENXIO: the node exists with no device behind it. Everything else (EBUSY, EACCES,
    /// EINVAL, EIO, ...) comes from a device that is present.
    pub fn of_errno(errno: Option<i32>) -> Unusable {
        match errno {
            Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => Unusable::Absent,
            _ => Unusable::Refused,
        }
    }

    /// A word for the status line.
    pub fn describe(self) -> &'static str {
        match self {
            Unusable::Absent => "absent",
            Unusable::Refused => "refused",
        }
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// When to try again (the caller's clock).
    pub at_ns: u64,
    /// Whether this failure starts something worth a log line: the first since the camera last
    /// worked, or a change between absent and refused. Repeats are counted, not logged.
    pub news: bool,
}

/// The retry policy of one camera: see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    backoff: Backoff,
    /// The first failure since the camera last delivered a whole frame.
    down_since_ns: Option<u64>,
    last: Option<Unusable>,
    attempts: u32,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self::new()
    }
}

impl Reconnect {
    pub fn new() -> Self {
        Reconnect {
            backoff: Backoff::new(REFUSED_FIRST_NS, REFUSED_MAX_NS),
            down_since_ns: None,
            last: None,
            attempts: 0,
        }
    }

    /// An attempt (or the open stream) failed at `now_ns` for reason `why`.
    pub fn failed(&mut self, now_ns: u64, why: Unusable) -> Retry {
        let news = self.last != Some(why);
        self.down_since_ns.get_or_insert(now_ns);
        self.last = Some(why);
        self.attempts = self.attempts.saturating_add(1);
        let at_ns = match why {
            // A camera that comes back after being away is a new device (often a replug to
            // fix it): its first refusal (udev not yet done with its permissions, say) waits
            // the shortest time again, not what an earlier refusal had grown to.
            Unusable::Absent => {
                self.backoff.succeeded();
                now_ns.saturating_add(ABSENT_LOOK_NS)
            }
            Unusable::Refused => self.backoff.failed(now_ns),
        };
        Retry { at_ns, news }
    }

    /// The camera delivered a whole frame: it works, and the next failure is news again.
    ///
    /// Not on a successful `open`: a camera that opens and then fails at once must still back
    /// off, or it would be reopened twice a second for ever.
    pub fn working(&mut self) {
        self.backoff.succeeded();
        self.down_since_ns = None;
        self.last = None;
        self.attempts = 0;
    }

    /// Since when the camera has been unusable (`None` while it works or before any failure).
    pub fn down_since_ns(&self) -> Option<u64> {
        self.down_since_ns
    }

    /// What the last failure was.
    pub fn last(&self) -> Option<Unusable> {
        self.last
    }

    /// Failed attempts since the camera last worked.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn errnos_of_a_missing_node_mean_absent_and_the_rest_refused() {
        let cases = [
            (Some(libc::ENOENT), Unusable::Absent),
            (Some(libc::ENODEV), Unusable::Absent),
            (Some(libc::ENXIO), Unusable::Absent),
            (Some(libc::EBUSY), Unusable::Refused),
            (Some(libc::EACCES), Unusable::Refused),
            (Some(libc::EPERM), Unusable::Refused),
            (Some(libc::EINVAL), Unusable::Refused),
            (Some(libc::EIO), Unusable::Refused),
            (Some(libc::EPIPE), Unusable::Refused),
            (None, Unusable::Refused),
        ];
        for (errno, want) in cases {
            assert_eq!(Unusable::of_errno(errno), want, "errno {errno:?}");
        }
    }

    #[test]
    fn an_absent_camera_is_looked_for_at_the_short_interval_however_long_it_stays_away() {
        let mut r = Reconnect::new();
        let mut now = 1_000 * MS;
        for attempt in 0..100 {
            let retry = r.failed(now, Unusable::Absent);
            assert_eq!(retry.at_ns - now, ABSENT_LOOK_NS, "attempt {attempt}");
            assert_eq!(retry.news, attempt == 0, "only the first is logged");
            now = retry.at_ns;
        }
        assert_eq!(r.down_since_ns(), Some(1_000 * MS));
        assert_eq!(r.attempts(), 100);
        assert_eq!(r.last(), Some(Unusable::Absent));
    }

    #[test]
    fn a_refusing_camera_backs_off_doubling_to_the_ceiling() {
        let mut r = Reconnect::new();
        let waits: Vec<u64> = (0..7)
            .map(|_| r.failed(10_000 * MS, Unusable::Refused).at_ns - 10_000 * MS)
            .collect();
        assert_eq!(
            waits,
            [500, 1_000, 2_000, 4_000, 8_000, 8_000, 8_000].map(|ms| ms * MS)
        );
    }

    #[test]
    fn a_stream_that_vanishes_is_looked_for_again_within_the_short_interval() {
        // Streaming, then ENODEV on dequeue (USB disconnect): the first look comes after the
        // short interval, not after a backoff grown by refusals before the camera worked.
        let mut r = Reconnect::new();
        r.failed(0, Unusable::Refused);
        r.failed(500 * MS, Unusable::Refused);
        r.working();
        let vanished = r.failed(60_000 * MS, Unusable::of_errno(Some(libc::ENODEV)));
        assert_eq!(vanished.at_ns, 60_000 * MS + ABSENT_LOOK_NS);
        assert!(vanished.news);
        assert_eq!(r.down_since_ns(), Some(60_000 * MS));
    }

    #[test]
    fn a_camera_back_from_absence_refusing_starts_the_backoff_over() {
        let mut r = Reconnect::new();
        for i in 0..5 {
            r.failed(i * 1_000 * MS, Unusable::Refused); // grown to 8 s
        }
        r.failed(10_000 * MS, Unusable::Absent);
        let refused = r.failed(10_250 * MS, Unusable::Refused);
        assert_eq!(refused.at_ns - 10_250 * MS, REFUSED_FIRST_NS);
        assert!(refused.news, "absent -> refused is a change worth a line");
        assert_eq!(
            r.down_since_ns(),
            Some(0),
            "unusable since the first failure"
        );
    }

    #[test]
    fn a_camera_that_opens_but_never_delivers_keeps_backing_off() {
        // Each reopen "succeeds" but no whole frame comes, so `working` is never called: the
        // stall (a refusal) keeps growing the wait.
        let mut r = Reconnect::new();
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..4 {
            let retry = r.failed(now, Unusable::Refused);
            waits.push((retry.at_ns - now) / MS);
            now = retry.at_ns + 2_000 * MS;
        }
        assert_eq!(waits, [500, 1_000, 2_000, 4_000]);
    }

    #[test]
    fn a_whole_frame_clears_the_record() {
        let mut r = Reconnect::new();
        r.failed(5 * MS, Unusable::Absent);
        r.working();
        assert_eq!(r.down_since_ns(), None);
        assert_eq!(r.last(), None);
        assert_eq!(r.attempts(), 0);
        assert!(r.failed(9 * MS, Unusable::Absent).news);
    }
}
