//! Transport settings, every one with a default. The exhibit defaults leave FEC and NACK off:
//! raw loss is the point of the installation.

use std::time::Duration;

use keymash_core::Quality;

use crate::fec::FecOverhead;
use crate::rtp::PayloadType;

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
    /// A frame's packets leave spread over this time (default a third of the frame interval).
    pub frame_spread: Duration,
    /// Upper bound on the sending rate in bytes per second; `None`: only frame spreading.
    pub max_rate_bytes_per_sec: Option<u64>,
    /// How often the receiver sends RTCP feedback.
    pub feedback_interval: Duration,
    /// How often the sender sends a sender report (for RTT), also its keepalive when idle.
    pub sender_report_interval: Duration,
    /// The sender falls back to `fallback_quality` when no feedback came for this long.
    pub quality_fallback_timeout: Duration,
    pub fallback_quality: Quality,
    /// Each side sends something at least this often, so NAT/conntrack state stays up.
    pub keepalive_interval: Duration,
    /// The peer counts as gone when nothing came from it for this long.
    pub peer_timeout: Duration,
    /// A packet is never retransmitted (nor NACKed) this long after it was first sent: stale
    /// video is useless.
    pub retransmit_deadline: Duration,
    /// NACKs per lost packet at most.
    pub max_nack_tries: u8,
    /// RTT assumed until the receiver measures one from NACK round trips; on the high side, so
    /// the first retransmission can arrive before a second NACK makes the sample ambiguous.
    pub initial_rtt: Duration,
    /// Receive window size in packets.
    pub window_packets: usize,
    /// Packets the sender keeps for retransmission.
    pub retransmit_history_packets: usize,
}

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
            feedback_interval: Duration::from_millis(100),
            sender_report_interval: Duration::from_millis(500),
            quality_fallback_timeout: Duration::from_secs(2),
            fallback_quality: Quality::saturating(50),
            keepalive_interval: Duration::from_millis(500),
            peer_timeout: Duration::from_secs(3),
            retransmit_deadline: Duration::from_millis(150),
            max_nack_tries: 3,
            initial_rtt: Duration::from_millis(100),
            window_packets: 1024,
            retransmit_history_packets: 2048,
        }
    }
}

impl TransportConfig {
    /// How long the receiver holds back later packets while waiting for a missing one: the
    /// reorder tolerance, plus a frame's spread when FEC may repair it (repair packets come
    /// after the frame), plus the retransmit deadline when NACK may bring it back.
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
