//! The encoder's choice of frame: live video wants the newest frame, not all frames. When
//! encoding fell behind, the encoder skips to the newest delayed frame (the skipped ones are
//! counted as dropped) instead of queueing.

/// Which frame to encode after the ring reported a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewestFrame {
    /// The ring sequence number to read.
    pub seq: u64,
    /// Frames passed over: lapped by the writer before this reader saw them (`missed`), and
    /// written after `arrived` while the encoder was busy.
    pub skipped: u64,
}

impl NewestFrame {
    /// The frame to encode when the ring says frame `arrived` is next (after `missed` lapped
    /// ones) and its writer has written up to, not including, `write_seq`.
    pub fn pick(arrived: u64, missed: u64, write_seq: u64) -> Self {
        let seq = write_seq.saturating_sub(1).max(arrived);
        NewestFrame {
            seq,
            skipped: missed + (seq - arrived),
        }
    }

    /// Whether the reader must move past `arrived` (to `seq + 1`) so the skipped frames are not
    /// handed out next.
    pub fn skips_ahead_of(&self, arrived: u64) -> bool {
        self.seq != arrived
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoder_that_keeps_up_takes_the_frame_that_arrived() {
        assert_eq!(
            NewestFrame::pick(7, 0, 8),
            NewestFrame { seq: 7, skipped: 0 }
        );
        assert!(!NewestFrame::pick(7, 0, 8).skips_ahead_of(7));
    }

    #[test]
    fn an_encoder_that_fell_behind_takes_the_newest_and_counts_the_rest() {
        let pick = NewestFrame::pick(7, 2, 11);
        assert_eq!(
            pick,
            NewestFrame {
                seq: 10,
                skipped: 5
            }
        );
        assert!(pick.skips_ahead_of(7));
    }

    #[test]
    fn a_write_sequence_behind_the_arrival_never_goes_back() {
        // A ring read racing its writer's counter: never pick an older frame than arrived.
        assert_eq!(NewestFrame::pick(7, 0, 3).seq, 7);
        assert_eq!(NewestFrame::pick(0, 0, 0).seq, 0);
    }
}
