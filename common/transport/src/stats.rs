//! Honest counters with the names people who run streams know, and a 1-second windowed loss
//! percentage beside the totals (the totals alone hide what is happening now).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What the receiving side counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiverStats {
    /// Media packets that arrived from the network, each counted once.
    pub received: u64,
    /// Media packets the consumer never got: given up at the cursor or passed over by a jump.
    pub lost: u64,
    /// Lost packets rebuilt from FEC repair packets in time.
    pub recovered_fec: u64,
    /// Lost packets that came back after a NACK in time.
    pub recovered_nack: u64,
    /// Packets that arrived behind the consumer cursor (discarded).
    pub late: u64,
    /// Packets that arrived twice (discarded).
    pub duplicate: u64,
    /// Packets passed over when the window jumped ahead (missing or not yet consumed).
    pub jumped: u64,
    /// Datagrams that failed to parse (RTP, RTCP or FEC).
    pub malformed: u64,
    /// Well-formed packets of another stream or payload type (ignored).
    pub foreign: u64,
    /// Repair packets received.
    pub repair_received: u64,
    /// NACK requests sent (sequence numbers).
    pub nacks_sent: u64,
    /// RTCP compounds sent.
    pub feedback_sent: u64,
    /// Payloads handed to the consumer.
    pub delivered: u64,
    /// Times the receiver moved on to a new sender stream (a restarted sender, new SSRC).
    pub stream_switches: u64,
    /// Datagrams that failed authentication (forged, damaged, another key, or not sealed).
    pub auth_failed: u64,
    /// Authentic datagrams dropped as replays (seen before, too old, or of a retired session).
    pub replayed: u64,
    /// Authentic datagrams of a sender session not yet confirmed live (not used).
    pub unconfirmed: u64,
    /// Interarrival jitter (RFC 3550 A.8).
    pub jitter: Duration,
    /// Round trip time, if measured: from RFC 3611 RRTR/DLRR blocks (every sender report
    /// answers the receiver's last RRTR), else from NACK round trips.
    pub rtt: Option<Duration>,
    /// Lost / (delivered + lost) over the last second, in percent.
    pub loss_percent_1s: f64,
}

/// What the sending side counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderStats {
    pub frames: u64,
    pub media_sent: u64,
    pub repair_sent: u64,
    pub retransmitted: u64,
    /// Bytes of the retransmissions.
    pub retransmitted_bytes: u64,
    /// Bytes of the media packets sent (first transmissions).
    pub media_bytes_sent: u64,
    /// NACKed packets not resent: past their deadline, out of the history, resent the most
    /// times allowed or less than an RTT ago.
    pub retransmit_refused: u64,
    /// NACKed packets not resent because retransmissions used up their share of the rate or
    /// the retransmission queue was full.
    pub retransmit_capped: u64,
    /// Packets dropped from the send queue, stale after waiting past the maximum queue delay.
    pub send_queue_dropped: u64,
    pub nacks_received: u64,
    pub reports_received: u64,
    pub malformed: u64,
    pub foreign: u64,
    /// Round trip time from the last receiver report (LSR/DLSR).
    pub rtt: Option<Duration>,
    /// From the last receiver report: fraction lost (0..=1) since the previous report.
    pub remote_fraction_lost: f64,
    pub remote_cumulative_lost: i32,
    pub remote_jitter: Duration,
}

/// Counts of delivered and lost packets in fixed buckets spanning one second.
#[derive(Debug, Clone)]
pub struct LossWindow {
    bucket: Duration,
    buckets: VecDeque<(Instant, u64, u64)>,
    span: Duration,
}

impl Default for LossWindow {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), 10)
    }
}

impl LossWindow {
    pub fn new(span: Duration, buckets: u32) -> Self {
        LossWindow {
            bucket: span / buckets.max(1),
            buckets: VecDeque::new(),
            span,
        }
    }

    fn current(&mut self, now: Instant) -> &mut (Instant, u64, u64) {
        let fresh = self
            .buckets
            .back()
            .is_none_or(|(start, _, _)| now.saturating_duration_since(*start) >= self.bucket);
        if fresh {
            self.buckets.push_back((now, 0, 0));
        }
        self.expire(now);
        let last = self.buckets.len() - 1;
        &mut self.buckets[last]
    }

    fn expire(&mut self, now: Instant) {
        while self.buckets.len() > 1
            && self
                .buckets
                .front()
                .is_some_and(|(s, _, _)| now.saturating_duration_since(*s) >= self.span)
        {
            self.buckets.pop_front();
        }
    }

    pub fn delivered(&mut self, now: Instant, n: u64) {
        self.current(now).1 += n;
    }

    pub fn lost(&mut self, now: Instant, n: u64) {
        self.current(now).2 += n;
    }

    /// Percent lost over the last second (0 when nothing happened).
    pub fn percent(&self, now: Instant) -> f64 {
        let (mut delivered, mut lost) = (0, 0);
        for (start, d, l) in &self.buckets {
            if now.saturating_duration_since(*start) < self.span {
                delivered += d;
                lost += l;
            }
        }
        if delivered + lost == 0 {
            0.0
        } else {
            100.0 * lost as f64 / (delivered + lost) as f64
        }
    }
}

/// How long no media packet has arrived, from the count of received packets sampled now and
/// then: the loss over the last second says 0% when nothing came at all, which is not "no loss".
#[derive(Debug, Clone, Copy)]
pub struct MediaSilence {
    received: u64,
    since: Instant,
}

impl MediaSilence {
    /// From `now`, with nothing received yet.
    pub fn new(now: Instant) -> Self {
        MediaSilence {
            received: 0,
            since: now,
        }
    }

    /// `received` media packets so far at `now`; returns how long the count has not moved.
    pub fn observe(&mut self, now: Instant, received: u64) -> Duration {
        if received != self.received {
            self.received = received;
            self.since = now;
        }
        now.saturating_duration_since(self.since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_counts_from_the_last_change_of_the_received_count() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut silence = MediaSilence::new(t0);
        assert_eq!(silence.observe(t0 + ms(700), 0), ms(700), "nothing yet");
        assert_eq!(silence.observe(t0 + ms(800), 30), Duration::ZERO);
        assert_eq!(silence.observe(t0 + ms(900), 60), Duration::ZERO);
        assert_eq!(silence.observe(t0 + ms(2_900), 60), ms(2_000));
    }

    #[test]
    fn windowed_loss_forgets_what_is_older_than_a_second() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = LossWindow::default();
        w.delivered(t0, 90);
        w.lost(t0, 10);
        assert!((w.percent(t0) - 10.0).abs() < 1e-9);
        w.delivered(t0 + ms(500), 100);
        assert!((w.percent(t0 + ms(500)) - 5.0).abs() < 1e-9);
        assert!((w.percent(t0 + ms(1000)) - 0.0).abs() < 1e-9);
        w.lost(t0 + ms(1200), 100);
        assert!((w.percent(t0 + ms(1200)) - 50.0).abs() < 1e-9);
        assert_eq!(w.percent(t0 + ms(5000)), 0.0);
    }
}
