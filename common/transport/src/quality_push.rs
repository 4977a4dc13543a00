//! When a change of the requested quality goes to the sender.
//!
//! The design asks that quality follow mashing at once: a change of the quality the receiver
//! asks for is sent when it happens, not at the next periodic feedback (100 ms by default, which
//! was most of the key-press-to-picture time). The encoder uses one quality per frame, so more
//! than one change per frame interval is wasted on the wire: a change within a frame interval of
//! the last one sent waits until that interval ends (and then carries whatever is newest).
//! Periodic feedback still goes as before, for the statistics and as the fallback, and any
//! feedback that goes out (periodic, NACK) carries the newest quality, so it counts as the send.
//!
//! Sans-IO: the caller passes time in and says when feedback left; see
//! [`crate::Receiver`], which asks [`QualityPush::due`] on each timeout.

use std::time::{Duration, Instant};

use keymash_core::Quality;

/// The decision whether a requested quality needs feedback before the periodic one.
#[derive(Debug, Clone)]
pub struct QualityPush {
    /// At most one change per this long: the frame interval.
    min_gap: Duration,
    /// Off: periodic feedback only (the behaviour before; kept for comparisons).
    enabled: bool,
    /// The quality the last feedback carried; `None` before the first.
    sent: Option<Quality>,
    /// A change may not go before this: a frame interval after the last feedback that carried
    /// a change.
    next_allowed: Instant,
}

impl QualityPush {
    /// At most one change every `min_gap` (the frame interval), from `now` on; `enabled` false
    /// leaves every change to the periodic feedback.
    pub fn new(min_gap: Duration, enabled: bool, now: Instant) -> Self {
        QualityPush {
            min_gap,
            enabled,
            sent: None,
            next_allowed: now,
        }
    }

    /// When feedback must go to carry `wanted`, the quality the receiver asks for now: `None`
    /// when the last feedback already carried it (the periodic feedback is enough). An instant
    /// in the past means at once.
    pub fn due(&self, wanted: Quality) -> Option<Instant> {
        (self.enabled && self.sent != Some(wanted)).then_some(self.next_allowed)
    }

    /// Feedback carrying `quality` left at `now` (whatever made it go).
    pub fn sent(&mut self, now: Instant, quality: Quality) {
        if self.sent != Some(quality) {
            self.next_allowed = now + self.min_gap;
        }
        self.sent = Some(quality);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_nanos(33_333_333);

    fn q(v: u8) -> Quality {
        Quality::new(v).expect("valid quality")
    }

    /// A push that has sent `quality` at `at`, a while after it was made.
    fn settled(at: Instant, quality: Quality) -> QualityPush {
        let mut push = QualityPush::new(FRAME, true, at - FRAME * 10);
        push.sent(at - FRAME * 5, quality);
        push
    }

    #[test]
    fn the_first_change_goes_at_once() {
        let t0 = Instant::now() + FRAME * 20;
        let push = settled(t0, q(10));
        let due = push.due(q(40)).expect("a change is pushed");
        assert!(due <= t0, "due {:?} after the change", due - t0);
    }

    #[test]
    fn a_second_change_within_a_frame_interval_waits_for_the_interval_to_end() {
        let t0 = Instant::now() + FRAME * 20;
        let mut push = settled(t0, q(10));
        push.sent(t0, q(40));
        assert_eq!(push.due(q(40)), None, "sent: nothing more to push");
        // The mash level rises again 5 ms later: held until a frame interval after the first.
        assert_eq!(push.due(q(60)), Some(t0 + FRAME));
        // It goes then; a third change waits for the interval after that.
        push.sent(t0 + FRAME, q(60));
        assert_eq!(push.due(q(70)), Some(t0 + FRAME * 2));
        // Back to the quality last sent before it went: nothing to push.
        assert_eq!(push.due(q(60)), None);
    }

    #[test]
    fn without_a_change_only_the_periodic_feedback_goes() {
        let t0 = Instant::now() + FRAME * 20;
        let mut push = settled(t0, q(10));
        assert_eq!(push.due(q(10)), None);
        // Periodic feedback with the same quality neither pushes nor delays a later change.
        push.sent(t0 + FRAME * 3, q(10));
        assert_eq!(push.due(q(10)), None);
        assert_eq!(push.due(q(20)), Some(t0 - FRAME * 4), "at once");
    }

    #[test]
    fn periodic_feedback_that_carried_the_change_counts_as_the_push() {
        let t0 = Instant::now() + FRAME * 20;
        let mut push = settled(t0, q(10));
        push.sent(t0, q(40));
        // The change to 60 was waiting; a NACK compound carried it first.
        push.sent(t0 + FRAME / 2, q(60));
        assert_eq!(push.due(q(60)), None);
        // And it started the next interval.
        assert_eq!(push.due(q(70)), Some(t0 + FRAME / 2 + FRAME));
    }

    #[test]
    fn switched_off_every_change_waits_for_the_periodic_feedback() {
        let t0 = Instant::now();
        let mut push = QualityPush::new(FRAME, false, t0);
        assert_eq!(push.due(q(40)), None);
        push.sent(t0, q(40));
        assert_eq!(push.due(q(90)), None);
    }

    #[test]
    fn before_any_feedback_the_first_quality_goes_at_once() {
        let t0 = Instant::now();
        let push = QualityPush::new(FRAME, true, t0);
        assert_eq!(push.due(q(10)), Some(t0));
    }
}
