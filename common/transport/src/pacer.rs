//! Pacing: a frame's packets leave spread over a configured time (default a third of the frame
//! interval) and never faster than a configured byte rate, instead of one burst that overflows
//! switch and socket buffers and turns into the very loss we are trying to avoid.
//! Retransmissions jump the queue: they are late already.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::Transmit;

/// Paces packets out; sans-IO (the caller polls with `now`).
#[derive(Debug)]
pub struct Pacer {
    /// Packets to send at once, with the time they were queued.
    urgent: VecDeque<(Instant, Transmit)>,
    queue: VecDeque<(Instant, Transmit)>,
    /// Bytes per second; `None` = no rate limit beyond the frame spreading.
    max_rate: Option<u64>,
    /// Earliest time the next packet may leave under the rate limit.
    rate_ready: Option<Instant>,
}

impl Pacer {
    pub fn new(max_rate_bytes_per_sec: Option<u64>) -> Self {
        Pacer {
            urgent: VecDeque::new(),
            queue: VecDeque::new(),
            max_rate: max_rate_bytes_per_sec.filter(|&r| r > 0),
            rate_ready: None,
        }
    }

    /// Queue one frame's packets to leave evenly over `spread`, starting at `now` (or after the
    /// previous frame's last packet, if the queue is still draining).
    pub fn enqueue_frame(&mut self, now: Instant, spread: Duration, packets: Vec<Transmit>) {
        let n = packets.len() as u32;
        if n == 0 {
            return;
        }
        let step = spread / n;
        let start = self.queue.back().map_or(now, |(t, _)| (*t + step).max(now));
        for (i, p) in packets.into_iter().enumerate() {
            self.queue.push_back((start + step * i as u32, p));
        }
    }

    /// Queue a packet to leave as soon as the rate allows, before any frame packet, unless
    /// `max_urgent` are waiting already: then it is refused (returns `false`), so a flood of
    /// requests cannot grow the queue without bound.
    pub fn enqueue_urgent(&mut self, now: Instant, packet: Transmit, max_urgent: usize) -> bool {
        if self.urgent.len() >= max_urgent {
            return false;
        }
        self.urgent.push_back((now, packet));
        true
    }

    /// The next packet due at `now`, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if self.rate_ready.is_some_and(|r| r > now) {
            return None;
        }
        let packet = if let Some((_, p)) = self.urgent.pop_front() {
            p
        } else if self.queue.front().is_some_and(|(t, _)| *t <= now) {
            self.queue.pop_front()?.1
        } else {
            return None;
        };
        if let Some(rate) = self.max_rate {
            let nanos = packet.contents.len() as u64 * 1_000_000_000 / rate;
            let from = self.rate_ready.map_or(now, |r| r.max(now));
            self.rate_ready = Some(from + Duration::from_nanos(nanos));
        }
        Some(packet)
    }

    /// When the next packet will be due, if any is queued.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let due = match self.urgent.front() {
            Some((queued, _)) => *queued,
            None => self.queue.front()?.0,
        };
        Some(self.rate_ready.map_or(due, |r| r.max(due)))
    }

    /// Drop frame packets whose slot passed more than `max_delay` before `now` (the link or the
    /// rate limit cannot keep up); returns how many. Urgent packets are left alone: the sender
    /// already checked their deadline.
    pub fn drop_stale(&mut self, now: Instant, max_delay: Duration) -> usize {
        let before = self.queue.len();
        while self
            .queue
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > max_delay)
        {
            self.queue.pop_front();
        }
        before - self.queue.len()
    }

    /// Retransmissions waiting.
    pub fn urgent_len(&self) -> usize {
        self.urgent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.queue.is_empty()
    }

    pub fn queued(&self) -> usize {
        self.urgent.len() + self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TransmitKind;

    fn packets(n: usize, len: usize) -> Vec<Transmit> {
        (0..n)
            .map(|_| Transmit {
                contents: vec![0; len],
                kind: TransmitKind::Media,
            })
            .collect()
    }

    fn drain(p: &mut Pacer, start: Instant) -> Vec<Duration> {
        let mut now = start;
        let mut times = Vec::new();
        while !p.is_empty() {
            while p.poll_transmit(now).is_some() {
                times.push(now - start);
            }
            match p.poll_timeout() {
                Some(t) => now = t.max(now),
                None => break,
            }
        }
        times
    }

    #[test]
    fn a_frame_is_spread_evenly_over_the_configured_time() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None);
        p.enqueue_frame(t0, Duration::from_millis(10), packets(10, 100));
        let times = drain(&mut p, t0);
        let want: Vec<Duration> = (0..10).map(Duration::from_millis).collect();
        assert_eq!(times, want);
    }

    #[test]
    fn the_rate_limit_stretches_gaps_when_it_is_slower_than_the_spread() {
        let t0 = Instant::now();
        // 1000 bytes at 1 MB/s = 1 ms each, although the spread would allow 0.1 ms.
        let mut p = Pacer::new(Some(1_000_000));
        p.enqueue_frame(t0, Duration::from_micros(500), packets(5, 1000));
        let times = drain(&mut p, t0);
        let want: Vec<Duration> = (0..5).map(Duration::from_millis).collect();
        assert_eq!(times, want);
    }

    #[test]
    fn urgent_packets_go_before_queued_frame_packets() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None);
        p.enqueue_frame(t0, Duration::from_millis(10), packets(2, 10));
        assert!(p.enqueue_urgent(
            t0,
            Transmit {
                contents: vec![1],
                kind: TransmitKind::Retransmission
            },
            1
        ));
        assert!(
            !p.enqueue_urgent(
                t0,
                Transmit {
                    contents: vec![2],
                    kind: TransmitKind::Retransmission
                },
                1
            ),
            "bounded"
        );
        assert_eq!(
            p.poll_transmit(t0).map(|t| t.kind),
            Some(TransmitKind::Retransmission)
        );
        assert_eq!(
            p.poll_transmit(t0).map(|t| t.kind),
            Some(TransmitKind::Media)
        );
        assert_eq!(p.poll_transmit(t0), None);
        assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_millis(5)));
    }

    #[test]
    fn packets_stuck_past_the_maximum_delay_are_dropped() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Some(1000));
        p.enqueue_frame(t0, Duration::from_millis(1), packets(3, 1000));
        assert!(p.poll_transmit(t0).is_some());
        // At 1000 B/s the next may leave only after 1 s; by then both waited too long.
        assert_eq!(
            p.drop_stale(t0 + Duration::from_millis(100), Duration::from_millis(150)),
            0
        );
        assert_eq!(
            p.drop_stale(t0 + Duration::from_millis(200), Duration::from_millis(150)),
            2
        );
        assert!(p.is_empty());
    }

    #[test]
    fn a_second_frame_waits_behind_the_first() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None);
        p.enqueue_frame(t0, Duration::from_millis(4), packets(2, 10));
        p.enqueue_frame(t0, Duration::from_millis(4), packets(2, 10));
        let times = drain(&mut p, t0);
        assert_eq!(
            times,
            vec![
                Duration::ZERO,
                Duration::from_millis(2),
                Duration::from_millis(4),
                Duration::from_millis(6)
            ]
        );
    }
}
