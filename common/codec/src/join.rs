//! Where a consumer that joins a stream part-way starts: on a whole frame.
//!
//! A receiver that locks onto a sender stream (net-rx started, or a restarted net-tx's new RTP
//! stream taken over), or a reader that opens a ring of payloads (the display started), usually
//! arrives in the middle of a frame. Decoding that frame's tail would refresh only the lower part
//! of the picture: a torn frame that no network loss caused. [`FrameJoin`] tells the consumer to
//! skip the rest of the frame it joined and start with the next one. It only acts at a join:
//! after it, a frame whose first payloads were lost on the network is passed on as it is (that is
//! the installation's glitch, not a join).
//!
//! Sans-IO: the caller names its source (an RTP SSRC, a ring's open count: anything that changes
//! when the stream starts over) and the header of each payload.

use keymash_core::FrameNo;

use crate::payload::PayloadHeader;

/// Decides which payloads a consumer that joins a stream part-way takes; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct FrameJoin {
    source: Option<u64>,
    state: JoinState,
    skipped: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum JoinState {
    /// Nothing taken from the current source yet.
    #[default]
    Joining,
    /// Joined in the middle of this frame: its payloads are skipped.
    Skipping(FrameNo),
    /// On a frame boundary: everything is taken.
    Joined,
}

impl FrameJoin {
    /// A consumer that has joined nothing yet.
    pub fn new() -> Self {
        FrameJoin::default()
    }

    /// Whether to take the payload with `header` that came from `source`. A new `source` is a
    /// new join: its first payload is taken only if it starts a frame, and the rest of a frame
    /// joined part-way is skipped.
    pub fn admit(&mut self, source: u64, header: &PayloadHeader) -> bool {
        if self.source != Some(source) {
            self.source = Some(source);
            self.state = JoinState::Joining;
        }
        let take = match self.state {
            JoinState::Joined => true,
            JoinState::Joining if header.payload_index == 0 => true,
            JoinState::Joining => {
                self.state = JoinState::Skipping(header.frame_no);
                false
            }
            JoinState::Skipping(frame) => frame != header.frame_no,
        };
        if take {
            self.state = JoinState::Joined;
        } else {
            self.skipped += 1;
        }
        take
    }

    /// Payloads skipped so far, over every join.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(frame: u64, index: u16, count: u16) -> PayloadHeader {
        PayloadHeader {
            width: 64,
            height: 48,
            frame_no: FrameNo(frame),
            payload_index: index,
            payload_count: count,
            mb_stride: 1,
            first_seq: 0,
            mb_count: 1,
        }
    }

    /// (frame, index) pairs in arrival order, all from one source; returns what was taken.
    fn taken(join: &mut FrameJoin, source: u64, payloads: &[(u64, u16)]) -> Vec<(u64, u16)> {
        payloads
            .iter()
            .copied()
            .filter(|&(f, i)| join.admit(source, &header(f, i, 4)))
            .collect()
    }

    #[test]
    fn a_join_at_a_frame_start_takes_everything() {
        let mut join = FrameJoin::new();
        let all = [(7, 0), (7, 1), (7, 2), (7, 3), (8, 0)];
        assert_eq!(taken(&mut join, 1, &all), all);
        assert_eq!(join.skipped(), 0);
    }

    #[test]
    fn a_join_in_the_middle_of_a_frame_skips_its_tail_and_starts_with_the_next_frame() {
        let mut join = FrameJoin::new();
        let got = taken(&mut join, 1, &[(7, 2), (7, 3), (8, 0), (8, 1)]);
        assert_eq!(got, [(8, 0), (8, 1)]);
        assert_eq!(join.skipped(), 2);
    }

    #[test]
    fn after_a_join_a_frame_whose_first_payload_was_lost_is_still_taken() {
        let mut join = FrameJoin::new();
        // Frame 8 lost its first payload on the network: that is loss, not a join.
        let got = taken(&mut join, 1, &[(7, 0), (7, 1), (8, 1), (8, 2)]);
        assert_eq!(got, [(7, 0), (7, 1), (8, 1), (8, 2)]);
    }

    #[test]
    fn the_frame_after_a_skipped_one_is_taken_even_without_its_first_payload() {
        let mut join = FrameJoin::new();
        // Joined frame 7 part-way; frame 8's first payload was lost: frame 8's rest is taken,
        // or heavy loss could keep a consumer skipping frame after frame.
        let got = taken(&mut join, 1, &[(7, 3), (8, 2), (8, 3)]);
        assert_eq!(got, [(8, 2), (8, 3)]);
    }

    #[test]
    fn a_new_source_is_a_new_join() {
        let mut join = FrameJoin::new();
        assert_eq!(taken(&mut join, 1, &[(7, 0), (7, 1)]), [(7, 0), (7, 1)]);
        // The sender restarted (new SSRC) and its stream was taken over part-way through frame 9.
        assert_eq!(
            taken(&mut join, 2, &[(9, 1), (9, 2), (9, 3), (10, 0)]),
            [(10, 0)]
        );
        assert_eq!(join.skipped(), 3);
    }
}
