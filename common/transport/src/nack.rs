//! NACK bookkeeping on both ends.
//!
//! Receiver ([`NackTracker`]): a gap in the sequence numbers is NACKed once it has outlived the
//! reorder tolerance, then again at most once per RTT, at most `max_tries` times, and never
//! past the retransmit deadline. Sender ([`RetransmitHistory`]): a bounded ring of sent packets;
//! a packet past its deadline is never sent again (stale video is useless).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::seq::SeqNo;

/// Most sequence numbers the receiver tracks as missing (a long outage is not NACKed whole).
pub const MAX_MISSING: usize = 512;

#[derive(Debug, Clone)]
struct Missing {
    detected: Instant,
    first_nack: Option<Instant>,
    last_nack: Option<Instant>,
    tries: u8,
}

/// Receiver-side NACK state.
#[derive(Debug, Clone)]
pub struct NackTracker {
    missing: BTreeMap<SeqNo, Missing>,
    reorder_tolerance: Duration,
    deadline: Duration,
    max_tries: u8,
}

/// What the tracker knew about a packet that has now arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Not missing (in order, or never noticed).
    Expected,
    /// Was missing but not NACKed yet: reordered.
    Reordered,
    /// Was NACKed `tries` times, the first at `first_nack`. Only when `tries` is 1 is
    /// `now - first_nack` an unambiguous RTT sample (Karn's rule).
    AfterNack { first_nack: Instant, tries: u8 },
}

impl NackTracker {
    pub fn new(reorder_tolerance: Duration, deadline: Duration, max_tries: u8) -> Self {
        NackTracker {
            missing: BTreeMap::new(),
            reorder_tolerance,
            deadline,
            max_tries,
        }
    }

    /// A packet arrived; `highest_before` is the highest sequence number seen before it.
    pub fn on_arrival(
        &mut self,
        now: Instant,
        seq: SeqNo,
        highest_before: Option<SeqNo>,
    ) -> Arrival {
        if let Some(h) = highest_before {
            if seq > h.next() {
                let first = SeqNo::new(h.get() + 1)
                    .max(SeqNo::new(seq.get().saturating_sub(MAX_MISSING as u64)));
                let mut s = first;
                while s < seq {
                    self.missing.insert(
                        s,
                        Missing {
                            detected: now,
                            first_nack: None,
                            last_nack: None,
                            tries: 0,
                        },
                    );
                    s = s.next();
                }
                while self.missing.len() > MAX_MISSING {
                    self.missing.pop_first();
                }
            }
        }
        match self.missing.remove(&seq) {
            None => Arrival::Expected,
            Some(Missing {
                first_nack: Some(first_nack),
                tries,
                ..
            }) => Arrival::AfterNack { first_nack, tries },
            Some(_) => Arrival::Reordered,
        }
    }

    /// Stop tracking everything before `seq` (the consumer has moved past it).
    pub fn forget_before(&mut self, seq: SeqNo) {
        self.missing = self.missing.split_off(&seq);
    }

    /// Stop tracking one packet (recovered by other means).
    pub fn forget(&mut self, seq: SeqNo) {
        self.missing.remove(&seq);
    }

    /// Sequence numbers to NACK at `now`; marks them NACKed.
    pub fn due(&mut self, now: Instant, rtt: Duration) -> Vec<SeqNo> {
        let mut out = Vec::new();
        let (tolerance, deadline, max_tries) =
            (self.reorder_tolerance, self.deadline, self.max_tries);
        self.missing.retain(|seq, m| {
            let age = now.saturating_duration_since(m.detected);
            // Kept after the last try until the deadline, so a late retransmission is still
            // recognised as one.
            if age >= deadline {
                return false;
            }
            let ready = age >= tolerance
                && m.tries < max_tries
                && m.last_nack
                    .is_none_or(|t| now.saturating_duration_since(t) >= rtt);
            if ready {
                m.tries += 1;
                m.first_nack.get_or_insert(now);
                m.last_nack = Some(now);
                out.push(*seq);
            }
            true
        });
        out
    }

    /// When [`Self::due`] may next return something (or drop an expired entry).
    pub fn next_due(&self, rtt: Duration) -> Option<Instant> {
        self.missing
            .values()
            .map(|m| match m.last_nack {
                _ if m.tries >= self.max_tries => m.detected + self.deadline,
                None => m.detected + self.reorder_tolerance,
                Some(t) => t + rtt,
            })
            .min()
    }

    pub fn missing_count(&self) -> usize {
        self.missing.len()
    }
}

/// Why a NACKed packet was not retransmitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RetransmitRefused {
    #[error("packet {0} is no longer in the retransmit history")]
    NotInHistory(SeqNo),
    #[error("packet {0} is past its deadline")]
    PastDeadline(SeqNo),
    #[error("packet {0} was already retransmitted the most times allowed")]
    TooManyTimes(SeqNo),
    #[error("packet {0} was retransmitted less than an RTT ago")]
    TooSoon(SeqNo),
}

/// A sent packet kept for retransmission.
#[derive(Debug, Clone)]
struct Kept {
    seq: SeqNo,
    sent_at: Instant,
    bytes: Vec<u8>,
    resent: u8,
    last_resent: Option<Instant>,
}

/// Sender-side bounded history of sent media packets.
#[derive(Debug, Clone)]
pub struct RetransmitHistory {
    slots: Vec<Option<Kept>>,
    deadline: Duration,
}

impl RetransmitHistory {
    pub fn new(capacity: usize, deadline: Duration) -> Self {
        RetransmitHistory {
            slots: (0..capacity.max(1)).map(|_| None).collect(),
            deadline,
        }
    }

    fn index(&self, seq: SeqNo) -> usize {
        (seq.get() % self.slots.len() as u64) as usize
    }

    /// Remember a packet first sent at `sent_at`.
    pub fn insert(&mut self, seq: SeqNo, sent_at: Instant, packet: &[u8]) {
        let i = self.index(seq);
        match &mut self.slots[i] {
            Some(kept) => {
                kept.seq = seq;
                kept.sent_at = sent_at;
                kept.bytes.clear();
                kept.bytes.extend_from_slice(packet);
                kept.resent = 0;
                kept.last_resent = None;
            }
            slot @ None => {
                *slot = Some(Kept {
                    seq,
                    sent_at,
                    bytes: packet.to_vec(),
                    resent: 0,
                    last_resent: None,
                })
            }
        }
    }

    /// The packet to resend at `now`, unless it is gone or stale.
    pub fn get(&self, seq: SeqNo, now: Instant) -> Result<&[u8], RetransmitRefused> {
        match &self.slots[self.index(seq)] {
            Some(kept) if kept.seq == seq => {
                if now.saturating_duration_since(kept.sent_at) >= self.deadline {
                    Err(RetransmitRefused::PastDeadline(seq))
                } else {
                    Ok(&kept.bytes)
                }
            }
            _ => Err(RetransmitRefused::NotInHistory(seq)),
        }
    }

    /// The packet to resend at `now` as [`Self::get`], but at most `max_times` times in all and
    /// not again within `min_interval` (an RTT) of the last resend; counts the resend.
    pub fn take_for_resend(
        &mut self,
        seq: SeqNo,
        now: Instant,
        max_times: u8,
        min_interval: Duration,
    ) -> Result<&[u8], RetransmitRefused> {
        self.get(seq, now)?;
        let i = self.index(seq);
        let Some(kept) = self.slots[i].as_mut() else {
            return Err(RetransmitRefused::NotInHistory(seq));
        };
        if kept.resent >= max_times {
            return Err(RetransmitRefused::TooManyTimes(seq));
        }
        if kept
            .last_resent
            .is_some_and(|t| now.saturating_duration_since(t) < min_interval)
        {
            return Err(RetransmitRefused::TooSoon(seq));
        }
        kept.resent += 1;
        kept.last_resent = Some(now);
        Ok(&kept.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> SeqNo {
        SeqNo::new(n)
    }

    #[test]
    fn a_gap_is_nacked_after_the_tolerance_then_once_per_rtt_up_to_the_limit() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let rtt = ms(20);
        let mut n = NackTracker::new(ms(5), ms(150), 3);
        assert_eq!(n.on_arrival(t0, s(10), None), Arrival::Expected);
        n.on_arrival(t0, s(13), Some(s(10)));
        // (time, expected NACKs)
        let steps: &[(u64, &[u64], usize)] = &[
            (0, &[], 2),
            (4, &[], 2),
            (5, &[11, 12], 2),
            (6, &[], 2),
            (24, &[], 2),
            (25, &[11, 12], 2),
            (45, &[11, 12], 2),
            (65, &[], 2),
            (149, &[], 2),
            (150, &[], 0),
        ];
        for (at, want, still_missing) in steps {
            let got: Vec<u64> = n.due(t0 + ms(*at), rtt).iter().map(|q| q.get()).collect();
            assert_eq!(&got[..], *want, "at {at} ms");
            assert_eq!(n.missing_count(), *still_missing, "at {at} ms");
        }
    }

    #[test]
    fn an_arrival_tells_whether_it_was_reordered_or_nacked() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut n = NackTracker::new(ms(5), ms(150), 3);
        n.on_arrival(t0, s(1), None);
        n.on_arrival(t0, s(4), Some(s(1)));
        assert_eq!(n.on_arrival(t0, s(2), Some(s(4))), Arrival::Reordered);
        n.due(t0 + ms(5), ms(20));
        n.due(t0 + ms(25), ms(20));
        assert_eq!(
            n.on_arrival(t0 + ms(29), s(3), Some(s(4))),
            Arrival::AfterNack {
                first_nack: t0 + ms(5),
                tries: 2
            }
        );
        assert_eq!(n.missing_count(), 0);
    }

    #[test]
    fn nothing_is_nacked_past_the_deadline() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut n = NackTracker::new(ms(5), ms(30), 10);
        n.on_arrival(t0, s(1), None);
        n.on_arrival(t0, s(3), Some(s(1)));
        assert_eq!(n.due(t0 + ms(29), ms(100)).len(), 1);
        assert_eq!(n.due(t0 + ms(30), ms(0)).len(), 0);
        assert_eq!(n.missing_count(), 0);
    }

    #[test]
    fn the_history_refuses_stale_and_overwritten_packets() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = RetransmitHistory::new(4, ms(100));
        for q in 0..6 {
            h.insert(s(q), t0, &[q as u8]);
        }
        assert_eq!(h.get(s(5), t0 + ms(99)), Ok(&[5u8][..]));
        assert_eq!(
            h.get(s(5), t0 + ms(100)),
            Err(RetransmitRefused::PastDeadline(s(5)))
        );
        assert_eq!(h.get(s(1), t0), Err(RetransmitRefused::NotInHistory(s(1))));
    }

    #[test]
    fn a_packet_is_resent_at_most_n_times_and_once_per_rtt() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = RetransmitHistory::new(4, ms(1000));
        h.insert(s(1), t0, &[1]);
        assert!(h.take_for_resend(s(1), t0, 2, ms(20)).is_ok());
        assert_eq!(
            h.take_for_resend(s(1), t0 + ms(19), 2, ms(20)),
            Err(RetransmitRefused::TooSoon(s(1)))
        );
        assert!(h.take_for_resend(s(1), t0 + ms(20), 2, ms(20)).is_ok());
        assert_eq!(
            h.take_for_resend(s(1), t0 + ms(100), 2, ms(20)),
            Err(RetransmitRefused::TooManyTimes(s(1)))
        );
        h.insert(s(5), t0, &[5]);
        assert!(
            h.take_for_resend(s(5), t0, 2, ms(20)).is_ok(),
            "a new packet in the slot starts over"
        );
    }
}
