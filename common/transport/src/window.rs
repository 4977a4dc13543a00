//! The receive window of the original keymashed, made explicit: packets are held in a fixed
//! number of slots indexed by sequence number; a consumer cursor advances strictly in order;
//! packets behind the cursor are late and discarded; when an arrival runs a full window ahead
//! of the cursor, the cursor jumps forward so the newest packets always fit (live video wants
//! the newest data, not all data).

use crate::seq::SeqNo;

/// What happened to a packet offered to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Held until the cursor reaches it.
    Stored,
    /// Behind the cursor: the consumer gave up on it before it came; discarded.
    Late,
    /// Already held, or already handed to the consumer: discarded.
    Duplicate,
    /// Stored, after moving the cursor forward: `missing` sequence numbers that never arrived
    /// and `discarded` that arrived but were not consumed were given up.
    Jumped { missing: u64, discarded: u64 },
}

/// A fixed window of `capacity` slots indexed by sequence number.
#[derive(Debug)]
pub struct ReceiveWindow<T> {
    slots: Vec<Option<(SeqNo, T)>>,
    /// Sequence numbers handed to the consumer, by slot: tells a duplicate of a consumed packet
    /// from a late one for the last `capacity` numbers behind the cursor.
    consumed: Vec<Option<SeqNo>>,
    /// Next sequence number the consumer takes; `None` until the first packet.
    cursor: Option<SeqNo>,
    newest: Option<SeqNo>,
}

impl<T> ReceiveWindow<T> {
    /// A window of `capacity` slots (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        ReceiveWindow {
            slots: (0..capacity).map(|_| None).collect(),
            consumed: vec![None; capacity],
            cursor: None,
            newest: None,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn index(&self, seq: SeqNo) -> usize {
        (seq.get() % self.slots.len() as u64) as usize
    }

    /// Offer a packet. The first packet ever sets the cursor.
    pub fn insert(&mut self, seq: SeqNo, item: T) -> Insert {
        let cursor = *self.cursor.get_or_insert(seq);
        if seq < cursor {
            return if self.consumed[self.index(seq)] == Some(seq) {
                Insert::Duplicate
            } else {
                Insert::Late
            };
        }
        let capacity = self.slots.len() as u64;
        let mut outcome = Insert::Stored;
        if seq.get() - cursor.get() >= capacity {
            let new_cursor = SeqNo::new(seq.get() + 1 - capacity);
            let (mut missing, mut discarded) = (0, 0);
            let mut s = cursor;
            // Only the slots between the old and the new cursor can hold anything in range;
            // beyond a full window every slot is visited once.
            let span = new_cursor.get() - cursor.get();
            if span >= capacity {
                discarded = self.slots.iter_mut().filter_map(Option::take).count() as u64;
                missing = span - discarded;
            } else {
                while s < new_cursor {
                    let i = self.index(s);
                    match self.slots[i].take() {
                        Some((held, _)) if held == s => discarded += 1,
                        other => {
                            self.slots[i] = other;
                            missing += 1;
                        }
                    }
                    s = s.next();
                }
            }
            self.cursor = Some(new_cursor);
            outcome = Insert::Jumped { missing, discarded };
        }
        let i = self.index(seq);
        if matches!(&self.slots[i], Some((held, _)) if *held == seq) {
            return Insert::Duplicate;
        }
        self.slots[i] = Some((seq, item));
        if self.newest.is_none_or(|n| seq > n) {
            self.newest = Some(seq);
        }
        outcome
    }

    /// Take the packet at the cursor, if it is here, and advance.
    pub fn pop(&mut self) -> Option<(SeqNo, T)> {
        let cursor = self.cursor?;
        let i = self.index(cursor);
        match self.slots[i].take() {
            Some((held, item)) if held == cursor => {
                self.consumed[i] = Some(held);
                self.cursor = Some(cursor.next());
                Some((held, item))
            }
            other => {
                self.slots[i] = other;
                None
            }
        }
    }

    /// Whether the cursor waits on a packet that has not arrived while newer ones have.
    pub fn gap_at_cursor(&self) -> bool {
        match (self.cursor, self.newest) {
            (Some(c), Some(n)) => c < n && !self.contains(c),
            _ => false,
        }
    }

    /// Give up the missing packet at the cursor and move past it. Returns the sequence number
    /// given up, or `None` if there was no gap at the cursor.
    pub fn skip_missing(&mut self) -> Option<SeqNo> {
        if !self.gap_at_cursor() {
            return None;
        }
        let c = self.cursor?;
        self.cursor = Some(c.next());
        Some(c)
    }

    pub fn contains(&self, seq: SeqNo) -> bool {
        matches!(&self.slots[self.index(seq)], Some((held, _)) if *held == seq)
    }

    pub fn cursor(&self) -> Option<SeqNo> {
        self.cursor
    }

    pub fn newest(&self) -> Option<SeqNo> {
        self.newest
    }

    /// The original's "early-latest span": how far the newest packet is ahead of the cursor
    /// (0 when the consumer is caught up), `None` before the first packet.
    pub fn early_latest_span(&self) -> Option<u64> {
        let (c, n) = (self.cursor?, self.newest?);
        Some(n.get().saturating_sub(c.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> SeqNo {
        SeqNo::new(n)
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn insert_outcomes_follow_the_cursor() {
        // (window capacity, packets to insert before, pops before the probe, probe, expected outcome)
        let cases: &[(&str, usize, &[u64], usize, u64, Insert)] = &[
            ("first packet", 8, &[], 0, 100, Insert::Stored),
            ("in order", 8, &[100], 0, 101, Insert::Stored),
            (
                "reordered but ahead",
                8,
                &[100, 103],
                0,
                102,
                Insert::Stored,
            ),
            ("duplicate", 8, &[100, 101], 0, 101, Insert::Duplicate),
            (
                "again after consuming",
                8,
                &[100, 101],
                2,
                100,
                Insert::Duplicate,
            ),
            (
                "held, not yet consumed",
                8,
                &[100, 102],
                0,
                100,
                Insert::Duplicate,
            ),
            (
                "older than the first packet",
                8,
                &[100],
                0,
                99,
                Insert::Late,
            ),
            ("last slot of the window", 8, &[100], 0, 107, Insert::Stored),
            (
                "one past the window jumps",
                8,
                &[100],
                0,
                108,
                Insert::Jumped {
                    missing: 0,
                    discarded: 1,
                },
            ),
            (
                "far past the window jumps",
                8,
                &[100, 102],
                0,
                1000,
                Insert::Jumped {
                    missing: 891,
                    discarded: 2,
                },
            ),
            (
                "jump over gaps counts them",
                4,
                &[10, 12],
                0,
                15,
                Insert::Jumped {
                    missing: 1,
                    discarded: 1,
                },
            ),
        ];
        for (name, cap, before, pops, probe, want) in cases {
            let mut w = ReceiveWindow::new(*cap);
            for &b in *before {
                w.insert(s(b), b);
            }
            for _ in 0..*pops {
                w.pop();
            }
            assert_eq!(w.insert(s(*probe), *probe), *want, "{name}");
        }
    }

    #[test]
    fn the_consumer_gets_packets_in_order_and_waits_on_gaps() {
        let mut w = ReceiveWindow::new(16);
        for n in [1, 3, 2, 5] {
            w.insert(s(n), n);
        }
        let popped: Vec<u64> = std::iter::from_fn(|| w.pop()).map(|(_, v)| v).collect();
        assert_eq!(popped, vec![1, 2, 3]);
        assert!(w.gap_at_cursor());
        assert_eq!(w.early_latest_span(), Some(1));
        assert_eq!(w.skip_missing(), Some(s(4)));
        assert_eq!(w.insert(s(4), 4), Insert::Late, "given up, then arrived");
        assert_eq!(
            w.insert(s(2), 2),
            Insert::Duplicate,
            "consumed, then arrived again"
        );
        assert_eq!(w.pop(), Some((s(5), 5)));
        assert!(!w.gap_at_cursor());
        assert_eq!(w.skip_missing(), None);
        assert_eq!(w.early_latest_span(), Some(0));
    }

    #[test]
    fn after_a_jump_the_newest_packet_is_inside_the_window() {
        let mut w = ReceiveWindow::new(8);
        w.insert(s(0), ());
        w.insert(s(20), ());
        assert_eq!(w.cursor(), Some(s(13)));
        assert_eq!(w.early_latest_span(), Some(7));
        assert_eq!(w.insert(s(12), ()), Insert::Late);
        assert_eq!(w.insert(s(5), ()), Insert::Late);
        assert_eq!(w.insert(s(13), ()), Insert::Stored);
        assert_eq!(w.pop().map(|(q, _)| q), Some(s(13)));
    }

    #[test]
    fn early_latest_span_is_unknown_before_the_first_packet() {
        let w: ReceiveWindow<()> = ReceiveWindow::new(4);
        assert_eq!(w.early_latest_span(), None);
        assert!(!w.gap_at_cursor());
    }
}
