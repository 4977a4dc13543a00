//! Whether the screen shows live video, and if not, why: the decision behind the signal-lost
//! card.
//!
//! A wall screen must never show a frozen picture as if it were live. When no frame has been
//! presented for `display.signal_lost_ms`, the display shows the card (the last picture dimmed
//! with a "signal lost, reconnecting" line) and says why, told from the counters the other
//! receiver stages publish:
//!
//! - net-rx's statistics are missing or stale: net-rx itself is down;
//! - net-rx counts media packets arriving: packets arrive but no frame completes;
//! - the loss filter (loss-controller's kernel counters) sees video packets and drops them all:
//!   everything is dropped by the filter;
//! - the filter passes packets that net-rx never counts: they are refused (wrong key, foreign);
//! - nothing moves anywhere: the sender is silent (stopped, or the cable is out).
//!
//! The first frame presented again ends the card at once: the display calls
//! [`SignalWatch::frame_shown`] when it presents it, so the live picture is back on the very tick
//! that shows the frame. Time is a parameter, so the tests drive it with a fake clock.

use std::fmt;
use std::time::{Duration, Instant};

/// A counter counts as moving if it rose within half the configured silence, but never less
/// than this: longer than any statistics cell's publishing interval (net-rx every 100 ms,
/// loss-controller at `loss.refresh_hz`, at least 50), so a counter that did not move really saw
/// nothing.
pub const MIN_ACTIVITY_WINDOW: Duration = Duration::from_millis(250);
/// ... and never more than this, so the reason follows a change (the filter starting to drop
/// everything) within a second.
pub const MAX_ACTIVITY_WINDOW: Duration = Duration::from_secs(1);

/// How recent a counter's rise must be to count as traffic, for a card that shows after
/// `lost_after`. Half of it: the packets of the last frame shown (counted by net-rx up to 100 ms
/// later) are then older than the window when the card first shows, so a sender that stopped is
/// called silent from the card's first picture, not "no frame completes" for a moment first.
pub fn activity_window(lost_after: Duration) -> Duration {
    (lost_after / 2).clamp(MIN_ACTIVITY_WINDOW, MAX_ACTIVITY_WINDOW)
}

/// What the other receiver stages' statistics say, read at one instant. `None` for a stage
/// whose statistics cell is missing or stale (the stage is not running).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evidence {
    /// net-rx's media packets received (counter `packets`).
    pub net_rx_packets: Option<u64>,
    /// The loss filter's kernel counters: video packets seen and dropped.
    pub filter: Option<FilterCounters>,
}

/// loss-controller's kernel counters (`seen`, `dropped`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterCounters {
    pub seen: u64,
    pub dropped: u64,
}

/// Why no video is on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LostReason {
    /// No media packet reaches net-rx and the filter (if it runs) sees none either.
    SenderSilent,
    /// The filter sees video packets and drops every one.
    AllDropped,
    /// The filter passes packets but net-rx counts none (refused: wrong key, foreign stream).
    NotAccepted,
    /// net-rx receives media packets, but no frame comes out of them.
    NoFrameCompletes,
    /// net-rx publishes no statistics: it is not running.
    NetRxDown,
}

impl LostReason {
    /// A short lower-case phrase for the status line and the log.
    pub fn phrase(self) -> &'static str {
        match self {
            LostReason::SenderSilent => "sender silent, no packets arrive",
            LostReason::AllDropped => "packets arrive, all dropped by the loss filter",
            LostReason::NotAccepted => "packets pass the filter, net-rx accepts none",
            LostReason::NoFrameCompletes => "packets arrive, no frame completes",
            LostReason::NetRxDown => "net-rx not running",
        }
    }

    /// The same for the card, in the characters the built-in font has (capitals, no comma).
    pub fn card_line(self) -> &'static str {
        match self {
            LostReason::SenderSilent => "SENDER SILENT - NO PACKETS ARRIVE",
            LostReason::AllDropped => "ALL PACKETS DROPPED BY THE LOSS FILTER",
            LostReason::NotAccepted => "PACKETS REFUSED BY NET-RX",
            LostReason::NoFrameCompletes => "PACKETS ARRIVE - NO FRAME COMPLETES",
            LostReason::NetRxDown => "NET-RX NOT RUNNING",
        }
    }
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.phrase())
    }
}

/// The signal's state at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalState {
    /// A frame was presented within the configured time.
    Live,
    /// No frame for the configured time: the card shows. `ever_live` is false while no frame has
    /// been shown since the display started.
    Lost {
        /// How long no frame has been presented (since the last one, or since the start).
        silent_for: Duration,
        why: LostReason,
        ever_live: bool,
    },
}

impl SignalState {
    pub fn is_lost(&self) -> bool {
        matches!(self, SignalState::Lost { .. })
    }

    /// The card's first line.
    pub fn card_title(&self) -> Option<&'static str> {
        match self {
            SignalState::Live => None,
            SignalState::Lost {
                ever_live: true, ..
            } => Some("SIGNAL LOST - RECONNECTING"),
            SignalState::Lost {
                ever_live: false, ..
            } => Some("NO SIGNAL YET - WAITING FOR THE SENDER"),
        }
    }
}

/// Traffic must have gone on for this long, with no frame shown, before the card names it
/// rather than the silence: a sender coming back is first counted by net-rx and shown a playout
/// hold and a tick later, and the card should not flick to "no frame completes" for that moment.
pub const SUSTAINED_TRAFFIC: Duration = MIN_ACTIVITY_WINDOW;

/// When a counter last rose, and since when it has kept rising.
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    last: Option<u64>,
    rose_at: Option<Instant>,
    /// The first rise after a quiet spell (no rise for longer than the window).
    since: Option<Instant>,
}

impl Activity {
    fn observe(&mut self, now: Instant, value: Option<u64>, window: Duration) {
        match (self.last, value) {
            // A restarted stage starts its counters again from 0: a fall is a new baseline,
            // not traffic.
            (Some(last), Some(v)) if v > last => {
                if !self.moving(now, window) {
                    self.since = Some(now);
                }
                self.rose_at = Some(now);
            }
            (_, None) => (self.rose_at, self.since) = (None, None),
            _ => {}
        }
        self.last = value;
    }

    fn moving(&self, now: Instant, window: Duration) -> bool {
        self.rose_at
            .is_some_and(|t| now.saturating_duration_since(t) <= window)
    }

    /// Rising now, and for at least [`SUSTAINED_TRAFFIC`].
    fn sustained(&self, now: Instant, window: Duration) -> bool {
        self.moving(now, window)
            && self
                .since
                .is_some_and(|t| now.saturating_duration_since(t) >= SUSTAINED_TRAFFIC)
    }
}

/// The signal-lost decision (see the module documentation).
#[derive(Debug, Clone)]
pub struct SignalWatch {
    lost_after: Duration,
    started: Instant,
    last_frame: Option<Instant>,
    net_rx_up: bool,
    net_rx_packets: Activity,
    filter_seen: Activity,
    filter_passed: Activity,
    /// Times the signal was lost after having been live.
    losses: u64,
    /// Whether the last [`SignalWatch::state`] said lost after a live picture (to count losses
    /// once each).
    counted_loss: bool,
}

impl SignalWatch {
    /// `lost_after` is `display.signal_lost_ms`; `now` is the display's start.
    pub fn new(lost_after: Duration, now: Instant) -> Self {
        SignalWatch {
            lost_after,
            started: now,
            last_frame: None,
            net_rx_up: false,
            net_rx_packets: Activity::default(),
            filter_seen: Activity::default(),
            filter_passed: Activity::default(),
            losses: 0,
            counted_loss: false,
        }
    }

    pub fn lost_after(&self) -> Duration {
        self.lost_after
    }

    /// A new frame was presented at `now`. Returns how long the screen had shown the card if this
    /// frame ended a loss (the live picture is back).
    pub fn frame_shown(&mut self, now: Instant) -> Option<Duration> {
        let was = self.state(now);
        self.last_frame = Some(now);
        self.counted_loss = false;
        match was {
            SignalState::Lost {
                silent_for,
                ever_live: true,
                ..
            } => Some(silent_for.saturating_sub(self.lost_after)),
            _ => None,
        }
    }

    /// Takes in the other stages' counters as read at `now`.
    pub fn observe(&mut self, now: Instant, evidence: Evidence) {
        let window = activity_window(self.lost_after);
        self.net_rx_up = evidence.net_rx_packets.is_some();
        self.net_rx_packets
            .observe(now, evidence.net_rx_packets, window);
        self.filter_seen
            .observe(now, evidence.filter.map(|f| f.seen), window);
        self.filter_passed.observe(
            now,
            evidence.filter.map(|f| f.seen.saturating_sub(f.dropped)),
            window,
        );
    }

    /// Live or lost at `now`, and why.
    pub fn state(&self, now: Instant) -> SignalState {
        let since = self.last_frame.unwrap_or(self.started);
        let silent_for = now.saturating_duration_since(since);
        if silent_for < self.lost_after {
            return SignalState::Live;
        }
        SignalState::Lost {
            silent_for,
            why: self.why(now),
            ever_live: self.last_frame.is_some(),
        }
    }

    /// [`SignalWatch::state`], counting each loss after a live picture once (for the
    /// statistics); the display calls this once per presentation.
    pub fn update(&mut self, now: Instant) -> SignalState {
        let state = self.state(now);
        if let SignalState::Lost {
            ever_live: true, ..
        } = state
        {
            if !self.counted_loss {
                self.counted_loss = true;
                self.losses += 1;
            }
        }
        state
    }

    /// Times the signal was lost after having been live.
    pub fn losses(&self) -> u64 {
        self.losses
    }

    fn why(&self, now: Instant) -> LostReason {
        let window = activity_window(self.lost_after);
        if !self.net_rx_up {
            LostReason::NetRxDown
        } else if self.net_rx_packets.sustained(now, window) {
            LostReason::NoFrameCompletes
        } else if self.filter_passed.sustained(now, window) {
            LostReason::NotAccepted
        } else if self.filter_seen.sustained(now, window) {
            LostReason::AllDropped
        } else {
            LostReason::SenderSilent
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOST_AFTER: Duration = Duration::from_millis(1000);
    const MS: Duration = Duration::from_millis(1);

    /// A fake clock: the display's start plus an offset.
    struct Clock(Instant);

    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + MS * ms as u32
        }
    }

    fn evidence(packets: u64, filter: Option<(u64, u64)>) -> Evidence {
        Evidence {
            net_rx_packets: Some(packets),
            filter: filter.map(|(seen, dropped)| FilterCounters { seen, dropped }),
        }
    }

    fn why(state: SignalState) -> Option<LostReason> {
        match state {
            SignalState::Live => None,
            SignalState::Lost { why, .. } => Some(why),
        }
    }

    #[test]
    fn the_card_shows_after_the_configured_silence_and_not_a_tick_before() {
        let clock = Clock(Instant::now());
        let mut watch = SignalWatch::new(LOST_AFTER, clock.at(0));
        watch.observe(clock.at(0), evidence(0, None));
        // 30 fps for a second: live throughout.
        for n in 0..30 {
            watch.frame_shown(clock.at(n * 33));
            assert_eq!(watch.update(clock.at(n * 33 + 1)), SignalState::Live);
        }
        let last = 29 * 33;
        assert_eq!(watch.update(clock.at(last + 999)), SignalState::Live);
        let state = watch.update(clock.at(last + 1000));
        assert!(state.is_lost(), "{state:?}");
        assert_eq!(
            state,
            SignalState::Lost {
                silent_for: LOST_AFTER,
                why: LostReason::SenderSilent,
                ever_live: true
            }
        );
        assert_eq!(state.card_title(), Some("SIGNAL LOST - RECONNECTING"));
        // Counted once however many ticks show the card.
        for n in 0..60 {
            watch.update(clock.at(last + 1000 + n * 33));
        }
        assert_eq!(watch.losses(), 1);
    }

    #[test]
    fn the_first_frame_after_a_loss_is_live_at_once_and_reports_the_cards_time() {
        let clock = Clock(Instant::now());
        let mut watch = SignalWatch::new(LOST_AFTER, clock.at(0));
        watch.observe(clock.at(0), evidence(0, None));
        watch.frame_shown(clock.at(100));
        assert!(watch.update(clock.at(3100)).is_lost());
        // The card showed from 1100 to 3150.
        assert_eq!(watch.frame_shown(clock.at(3150)), Some(MS * 2050));
        assert_eq!(watch.update(clock.at(3150)), SignalState::Live);
        assert_eq!(watch.update(clock.at(3183)), SignalState::Live);
        // A frame while live reports no loss.
        assert_eq!(watch.frame_shown(clock.at(3183)), None);
        // A second loss is counted again.
        assert!(watch.update(clock.at(4200)).is_lost());
        assert_eq!(watch.losses(), 2);
    }

    #[test]
    fn before_the_first_frame_the_card_says_waiting_and_no_loss_is_counted() {
        let clock = Clock(Instant::now());
        let mut watch = SignalWatch::new(LOST_AFTER, clock.at(0));
        watch.observe(clock.at(0), evidence(0, None));
        assert_eq!(watch.update(clock.at(500)), SignalState::Live);
        let state = watch.update(clock.at(1500));
        assert_eq!(
            state.card_title(),
            Some("NO SIGNAL YET - WAITING FOR THE SENDER")
        );
        assert_eq!(watch.losses(), 0);
        assert_eq!(watch.frame_shown(clock.at(1600)), None);
        assert_eq!(watch.update(clock.at(1600)), SignalState::Live);
    }

    #[test]
    fn the_reason_is_told_from_which_counters_move() {
        let clock = Clock(Instant::now());
        // (net-rx packets, filter seen/dropped) every 100 ms for two seconds after the last frame
        // at 0, then the reason at 2000 ms.
        type Step = fn(u64) -> Evidence;
        let table: [(&str, Step, LostReason); 6] = [
            (
                "nothing moves, no filter",
                |_| evidence(500, None),
                LostReason::SenderSilent,
            ),
            (
                "nothing moves, filter running",
                |_| evidence(500, Some((800, 300))),
                LostReason::SenderSilent,
            ),
            (
                "the filter sees packets and drops them all",
                |n| evidence(500, Some((800 + 10 * n, 300 + 10 * n))),
                LostReason::AllDropped,
            ),
            (
                "the filter passes packets net-rx does not count",
                |n| evidence(500, Some((800 + 10 * n, 300))),
                LostReason::NotAccepted,
            ),
            (
                "net-rx receives packets, no frame comes out",
                |n| evidence(500 + 10 * n, Some((800 + 10 * n, 300))),
                LostReason::NoFrameCompletes,
            ),
            (
                "net-rx publishes nothing",
                |_| Evidence {
                    net_rx_packets: None,
                    filter: Some(FilterCounters {
                        seen: 0,
                        dropped: 0,
                    }),
                },
                LostReason::NetRxDown,
            ),
        ];
        for (case, step, want) in table {
            let mut watch = SignalWatch::new(LOST_AFTER, clock.at(0));
            watch.frame_shown(clock.at(0));
            for n in 0..=20 {
                watch.observe(clock.at(n * 100), step(n));
            }
            assert_eq!(why(watch.update(clock.at(2000))), Some(want), "{case}");
        }
    }

    #[test]
    fn the_last_frames_own_packets_do_not_make_a_stopped_sender_look_alive() {
        let clock = Clock(Instant::now());
        let mut watch = SignalWatch::new(LOST_AFTER, clock.at(0));
        // 30 fps with 10 packets a frame, net-rx publishing every 100 ms; the sender stops after
        // the frame shown at 990 ms, whose packets net-rx counts in its publication at 1050 ms.
        for n in 0..=30 {
            watch.frame_shown(clock.at(n * 33));
        }
        for n in 0..=50 {
            let t = n * 100 + 50;
            watch.observe(clock.at(t), evidence(10 * (t.min(1050) / 33), None));
        }
        let state = watch.update(clock.at(990 + 1000));
        assert_eq!(why(state), Some(LostReason::SenderSilent), "{state:?}");
        assert_eq!(activity_window(LOST_AFTER), MS * 500);
        assert_eq!(activity_window(MS * 100), MIN_ACTIVITY_WINDOW);
        assert_eq!(activity_window(MS * 60_000), MAX_ACTIVITY_WINDOW);
    }

    #[test]
    fn a_sender_coming_back_is_not_called_no_frame_completes_before_its_first_frame() {
        let clock = Clock(Instant::now());
        let mut watch = SignalWatch::new(LOST_AFTER, clock.at(0));
        watch.observe(clock.at(0), evidence(1000, None));
        watch.frame_shown(clock.at(0));
        for n in 1..=30 {
            watch.observe(clock.at(n * 100), evidence(1000, None));
        }
        // Packets again from 3000 ms, counted at 3100 and 3200; the frame shows at 3230.
        watch.observe(clock.at(3100), evidence(1010, None));
        assert_eq!(
            why(watch.update(clock.at(3100))),
            Some(LostReason::SenderSilent)
        );
        watch.observe(clock.at(3200), evidence(1020, None));
        assert_eq!(
            why(watch.update(clock.at(3200))),
            Some(LostReason::SenderSilent)
        );
        // Had no frame come, the card names the packets once they have gone on for a while.
        watch.observe(clock.at(3300), evidence(1030, None));
        watch.observe(clock.at(3400), evidence(1040, None));
        assert_eq!(
            why(watch.update(clock.at(3400))),
            Some(LostReason::NoFrameCompletes)
        );
    }

    #[test]
    fn traffic_that_stopped_more_than_the_activity_window_ago_is_silence() {
        let clock = Clock(Instant::now());
        let mut watch = SignalWatch::new(LOST_AFTER, clock.at(0));
        watch.frame_shown(clock.at(0));
        // Packets kept arriving (no frame completed) until 1800 ms, then stopped.
        for n in 0..=40 {
            let packets = 100 + 10 * n.min(18);
            watch.observe(clock.at(n * 100), evidence(packets, None));
            if n == 20 {
                assert_eq!(
                    why(watch.update(clock.at(2000))),
                    Some(LostReason::NoFrameCompletes)
                );
            }
        }
        assert_eq!(
            why(watch.update(clock.at(4000))),
            Some(LostReason::SenderSilent)
        );
    }

    #[test]
    fn a_restarted_stage_whose_counters_start_again_is_not_traffic() {
        let clock = Clock(Instant::now());
        let mut watch = SignalWatch::new(LOST_AFTER, clock.at(0));
        watch.frame_shown(clock.at(0));
        watch.observe(clock.at(0), evidence(5000, None));
        watch.observe(clock.at(100), Evidence::default());
        // net-rx is back with its counters from 0, and then nothing arrives.
        watch.observe(clock.at(1500), evidence(0, None));
        watch.observe(clock.at(1600), evidence(0, None));
        assert_eq!(
            why(watch.update(clock.at(1700))),
            Some(LostReason::SenderSilent)
        );
    }

    #[test]
    fn every_card_line_is_drawable_with_the_built_in_font() {
        let reasons = [
            LostReason::SenderSilent,
            LostReason::AllDropped,
            LostReason::NotAccepted,
            LostReason::NoFrameCompletes,
            LostReason::NetRxDown,
        ];
        let titles = [
            SignalState::Lost {
                silent_for: LOST_AFTER,
                why: LostReason::SenderSilent,
                ever_live: true,
            },
            SignalState::Lost {
                silent_for: LOST_AFTER,
                why: LostReason::SenderSilent,
                ever_live: false,
            },
        ]
        .map(|s| s.card_title().unwrap_or_default());
        for line in reasons.iter().map(|r| r.card_line()).chain(titles) {
            for c in line.chars() {
                assert!(
                    keymash_core::font::glyph(c).is_some(),
                    "no glyph for {c:?} in {line:?}"
                );
            }
        }
    }
}
