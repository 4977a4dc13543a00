//! Transport settings, every one with a default. The exhibit defaults leave FEC and NACK off:
//! raw loss is the point of the installation.

use std::time::Duration;

use keymash_core::Quality;

use crate::fec::FecOverhead;
use crate::rtp::PayloadType;
use crate::security::Protection;

/// Settings shared by [`crate::Sender`] and [`crate::Receiver`]; both ends should agree on the
/// payload types and on whether FEC is used.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportConfig {
    /// RTP payload type of codec payloads (dynamic, default 96).
    pub payload_type: PayloadType,
    /// RTP payload type of FEC repair packets (default 97).
    pub repair_payload_type: PayloadType,
    /// Send FEC repair packets (sender) / use them (receiver).
    pub fec: bool,
    /// Repair packets per source packet when `fec` is on (default 25%).
    pub fec_overhead: FecOverhead,
    /// Ask for and serve retransmissions.
    pub nack: bool,
    /// How long a gap may be plain reordering before it counts as a loss (NACKed, given up).
    pub reorder_tolerance: Duration,
    /// The camera's frame interval.
    pub frame_interval: Duration,
    /// A frame's packets leave spread over this time at most (default a third of the frame
    /// interval); at [`TransportConfig::pacing_rate_bytes_per_sec`] a small frame takes less.
    pub frame_spread: Duration,
    /// A frame's packets leave at this rate (bytes per second), and never take longer than
    /// `frame_spread`; `None`: every frame is spread over the whole `frame_spread`.
    pub pacing_rate_bytes_per_sec: Option<u64>,
    /// Upper bound on the sending rate in bytes per second; `None`: only frame spreading.
    pub max_rate_bytes_per_sec: Option<u64>,
    /// How often the receiver sends RTCP feedback.
    pub feedback_interval: Duration,
    /// The receiver sends a change of the requested quality at once (at most one per frame
    /// interval, see [`crate::quality_push`]) instead of at the next periodic feedback. On by
    /// default; off only to measure what it is worth.
    pub push_quality_changes: bool,
    /// How often the sender sends a sender report (for RTT), also its keepalive when idle.
    pub sender_report_interval: Duration,
    /// The sender falls back to `fallback_quality` when no feedback came for this long.
    pub quality_fallback_timeout: Duration,
    pub fallback_quality: Quality,
    /// Each side sends something at least this often, so NAT/conntrack state stays up.
    pub keepalive_interval: Duration,
    /// The peer counts as gone when nothing came from it for this long.
    pub peer_timeout: Duration,
    /// The receiver follows a new sender stream (a new SSRC: net-tx was restarted) once the
    /// current one has been silent this long; until then the newcomer counts as foreign.
    pub stream_switch_silence: Duration,
    /// A packet is never retransmitted (nor NACKed) this long after it was first sent: stale
    /// video is useless.
    pub retransmit_deadline: Duration,
    /// NACKs per lost packet at most.
    pub max_nack_tries: u8,
    /// Times the sender retransmits one packet at most (str0m: 5), and never twice within an RTT.
    pub max_retransmits_per_packet: u8,
    /// Retransmitted bytes are capped at this share of the media bytes sent (str0m: 15%), plus a
    /// burst allowance of [`RETRANSMIT_BURST_BYTES`]: NACK cannot amplify.
    pub retransmit_share: f64,
    /// Retransmissions waiting to leave at most; more are refused.
    pub max_urgent_packets: usize,
    /// Packet protection (sealing and opening, replay window); see [`crate::security`].
    pub security: Protection,
    /// RTT assumed until the receiver measures one from NACK round trips; on the high side, so
    /// the first retransmission can arrive before a second NACK makes the sample ambiguous.
    pub initial_rtt: Duration,
    /// Receive window size in packets.
    pub window_packets: usize,
    /// Packets the sender keeps for retransmission.
    pub retransmit_history_packets: usize,
    /// A packet still waiting in the pacer this long after its slot is dropped (and counted):
    /// when the link cannot keep up, sending stale video only delays the fresh.
    pub max_queue_delay: Duration,
    /// Give up missing packets the old way, one [`TransportConfig::gap_hold`] each, timed from
    /// when the consumer reaches it (so they are given up in series and latency builds under
    /// heavy loss). Off by default; only for tests and benches that measure the difference.
    pub serial_gap_hold: bool,
}

/// Retransmission budget a sender may spend at once beyond its share of the media rate: about
/// two large frames' worth, so a burst loss can still be repaired.
pub const RETRANSMIT_BURST_BYTES: f64 = 128.0 * 1228.0;

/// A configuration that cannot work, named for the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("payload_type and repair_payload_type are both {0}: the receiver could not tell media from repair packets")]
    SamePayloadTypes(u8),
    #[error("{0} must be longer than zero")]
    ZeroDuration(&'static str),
    #[error("frame_spread ({spread:?}) is longer than frame_interval ({interval:?}): frames would queue up without end")]
    SpreadLongerThanFrame {
        spread: Duration,
        interval: Duration,
    },
    #[error("window_packets must be at least {min} (a few frames of packets), got {got}")]
    WindowTooSmall { min: usize, got: usize },
    #[error("retransmit_history_packets must be at least 1 when nack is on")]
    EmptyHistory,
    #[error("retransmit_share must be in (0, 1], got {0}")]
    RetransmitShare(String),
}

/// Smallest useful receive window: one large frame, split into FEC blocks, fits with room.
pub const MIN_WINDOW_PACKETS: usize = 256;

impl Default for TransportConfig {
    fn default() -> Self {
        let frame_interval = Duration::from_nanos(1_000_000_000 / 30);
        TransportConfig {
            payload_type: PayloadType::DYNAMIC_VIDEO,
            repair_payload_type: PayloadType::DYNAMIC_REPAIR,
            fec: false,
            fec_overhead: FecOverhead::DEFAULT,
            nack: false,
            reorder_tolerance: Duration::from_millis(5),
            frame_interval,
            frame_spread: frame_interval / 3,
            max_rate_bytes_per_sec: None,
            pacing_rate_bytes_per_sec: None,
            feedback_interval: Duration::from_millis(100),
            push_quality_changes: true,
            sender_report_interval: Duration::from_millis(500),
            quality_fallback_timeout: Duration::from_secs(2),
            fallback_quality: Quality::saturating(50),
            keepalive_interval: Duration::from_millis(500),
            peer_timeout: Duration::from_secs(3),
            stream_switch_silence: Duration::from_millis(250),
            retransmit_deadline: Duration::from_millis(150),
            max_nack_tries: 3,
            max_retransmits_per_packet: 5,
            retransmit_share: 0.15,
            max_urgent_packets: 256,
            security: Protection::Unprotected,
            initial_rtt: Duration::from_millis(100),
            window_packets: 1024,
            retransmit_history_packets: 2048,
            max_queue_delay: frame_interval * 3,
            serial_gap_hold: false,
        }
    }
}

impl TransportConfig {
    /// Check that the settings can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.payload_type == self.repair_payload_type {
            return Err(ConfigError::SamePayloadTypes(self.payload_type.get()));
        }
        for (name, d) in [
            ("frame_interval", self.frame_interval),
            ("frame_spread", self.frame_spread),
            ("feedback_interval", self.feedback_interval),
            ("sender_report_interval", self.sender_report_interval),
            ("quality_fallback_timeout", self.quality_fallback_timeout),
            ("keepalive_interval", self.keepalive_interval),
            ("peer_timeout", self.peer_timeout),
            ("stream_switch_silence", self.stream_switch_silence),
            ("retransmit_deadline", self.retransmit_deadline),
            ("initial_rtt", self.initial_rtt),
            ("max_queue_delay", self.max_queue_delay),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        if self.frame_spread > self.frame_interval {
            return Err(ConfigError::SpreadLongerThanFrame {
                spread: self.frame_spread,
                interval: self.frame_interval,
            });
        }
        if self.window_packets < MIN_WINDOW_PACKETS {
            return Err(ConfigError::WindowTooSmall {
                min: MIN_WINDOW_PACKETS,
                got: self.window_packets,
            });
        }
        if self.nack && self.retransmit_history_packets == 0 {
            return Err(ConfigError::EmptyHistory);
        }
        if !(self.retransmit_share > 0.0 && self.retransmit_share <= 1.0) {
            return Err(ConfigError::RetransmitShare(
                self.retransmit_share.to_string(),
            ));
        }
        Ok(())
    }

    /// How long a frame of `bytes` (its packets, repair included) takes to leave: at the pacing
    /// rate, but never longer than `frame_spread`.
    pub fn spread_for(&self, bytes: usize) -> Duration {
        match self.pacing_rate_bytes_per_sec.filter(|&r| r > 0) {
            Some(rate) => {
                let nanos = (bytes as u128 * 1_000_000_000 / u128::from(rate))
                    .min(self.frame_spread.as_nanos());
                Duration::from_nanos(nanos as u64)
            }
            None => self.frame_spread,
        }
    }

    /// The old, fixed hold per missing packet (used only with `serial_gap_hold`): the reorder
    /// tolerance, plus a frame's spread when FEC may repair it (repair packets come after the
    /// frame), plus the retransmit deadline when NACK may bring it back. The receiver now
    /// waits [`crate::gap::loss_wait`] from the first later arrival instead.
    pub fn gap_hold(&self) -> Duration {
        let mut hold = self.reorder_tolerance;
        if self.fec {
            hold += self.frame_spread + self.reorder_tolerance;
        }
        if self.nack {
            hold += self.retransmit_deadline;
        }
        hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_leave_fec_and_nack_off() {
        let c = TransportConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert!(!c.fec && !c.nack);
        assert_eq!(c.payload_type.get(), 96);
        assert_eq!(c.fec_overhead, FecOverhead::DEFAULT);
        assert_eq!(c.feedback_interval, Duration::from_millis(100));
        assert!(c.frame_spread * 3 <= c.frame_interval);
    }

    #[test]
    fn a_frame_leaves_at_the_pacing_rate_but_never_slower_than_its_spread() {
        let mut c = TransportConfig {
            frame_spread: Duration::from_millis(11),
            pacing_rate_bytes_per_sec: Some(25_000_000),
            ..TransportConfig::default()
        };
        // 60 KB at 200 Mbit/s: 2.4 ms, not the 11 ms spread.
        assert_eq!(c.spread_for(60_000), Duration::from_micros(2_400));
        assert_eq!(c.spread_for(0), Duration::ZERO);
        // 1 MB would take 40 ms at the rate: capped at the spread, so frames do not queue up.
        assert_eq!(c.spread_for(1_000_000), Duration::from_millis(11));
        c.pacing_rate_bytes_per_sec = None;
        assert_eq!(c.spread_for(60_000), Duration::from_millis(11));
    }

    #[test]
    fn settings_that_cannot_work_are_refused_with_their_cause() {
        let base = TransportConfig::default;
        let cases: Vec<(TransportConfig, ConfigError)> = vec![
            (
                TransportConfig {
                    repair_payload_type: PayloadType::DYNAMIC_VIDEO,
                    ..base()
                },
                ConfigError::SamePayloadTypes(96),
            ),
            (
                TransportConfig {
                    feedback_interval: Duration::ZERO,
                    ..base()
                },
                ConfigError::ZeroDuration("feedback_interval"),
            ),
            (
                TransportConfig {
                    frame_spread: Duration::from_millis(40),
                    ..base()
                },
                ConfigError::SpreadLongerThanFrame {
                    spread: Duration::from_millis(40),
                    interval: base().frame_interval,
                },
            ),
            (
                TransportConfig {
                    window_packets: 10,
                    ..base()
                },
                ConfigError::WindowTooSmall {
                    min: MIN_WINDOW_PACKETS,
                    got: 10,
                },
            ),
            (
                TransportConfig {
                    nack: true,
                    retransmit_history_packets: 0,
                    ..base()
                },
                ConfigError::EmptyHistory,
            ),
        ];
        for (config, want) in cases {
            assert_eq!(config.validate(), Err(want));
        }
    }
}
