//! The one way a service follows a segment another process writes.
//!
//! A [`Follow`] opens the producer's segment once it exists, re-opens it when the producer
//! replaced it (a new segment under the same name, told by its inode through
//! [`keymash_shm::RingReader::is_replaced`], not guessed from silence), and logs each
//! transition once: waiting, following, replaced, refused. Silence is only a hint: a reader
//! that hears nothing calls [`Follow::silent`] and the replacement check runs at once instead of
//! at its next period. While there is no reader, [`Follow::waiting`] says why, for the
//! service's status line.

use std::time::{Duration, Instant};

use keymash_shm::{CellReader, CellValue, OpenError, RingGeometry, RingReader, SegmentId};

/// How often a missing segment is looked for again.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// How often a followed segment is checked for replacement while data flows (one `stat`).
pub const REPLACED_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// A reader of a segment that can be followed: opened by id, and able to tell whether its
/// writer replaced the segment since.
pub trait Followable: Sized {
    /// What the reader expects of the segment (a ring's geometry).
    type Expect: Copy + std::fmt::Debug;
    fn open_segment(id: &SegmentId, expect: Self::Expect) -> Result<Self, OpenError>;
    fn is_replaced(&self) -> bool;
}

impl Followable for RingReader {
    type Expect = RingGeometry;
    fn open_segment(id: &SegmentId, geometry: RingGeometry) -> Result<Self, OpenError> {
        RingReader::open_expecting(id, geometry)
    }
    fn is_replaced(&self) -> bool {
        RingReader::is_replaced(self)
    }
}

impl<T: CellValue> Followable for CellReader<T> {
    type Expect = ();
    fn open_segment(id: &SegmentId, _: ()) -> Result<Self, OpenError> {
        CellReader::open(id)
    }
    fn is_replaced(&self) -> bool {
        CellReader::is_replaced(self)
    }
}

/// Follows one segment written by `writer` (named in log lines and status).
#[derive(Debug)]
pub struct Follow<R: Followable> {
    id: SegmentId,
    expect: R::Expect,
    writer: &'static str,
    reader: Option<R>,
    opens: u64,
    just_opened: bool,
    next_attempt: Option<Instant>,
    next_replaced_check: Option<Instant>,
    /// Why there is no reader, as last logged (each distinct reason is logged once).
    waiting: Option<String>,
}

impl<R: Followable> Follow<R> {
    pub(crate) fn new(id: SegmentId, expect: R::Expect, writer: &'static str) -> Self {
        Follow {
            id,
            expect,
            writer,
            reader: None,
            opens: 0,
            just_opened: false,
            next_attempt: None,
            next_replaced_check: None,
            waiting: Some("not opened yet".to_owned()),
        }
    }

    pub fn id(&self) -> &SegmentId {
        &self.id
    }

    /// The reader: opens the segment if it is there (at most every [`RETRY_INTERVAL`]) and
    /// re-opens it if its writer replaced it.
    pub fn reader(&mut self) -> Option<&mut R> {
        let now = Instant::now();
        if let Some(reader) = &self.reader {
            if self.next_replaced_check.is_none_or(|t| now >= t) {
                self.next_replaced_check = Some(now + REPLACED_CHECK_INTERVAL);
                if reader.is_replaced() {
                    log::info!(
                        "{} was replaced by {}; following the new one",
                        self.id,
                        self.writer
                    );
                    self.reader = None;
                    self.next_attempt = None;
                }
            }
        }
        if self.reader.is_none() && self.next_attempt.is_none_or(|t| now >= t) {
            self.next_attempt = Some(now + RETRY_INTERVAL);
            self.try_open(now);
        }
        self.reader.as_mut()
    }

    fn try_open(&mut self, now: Instant) {
        match R::open_segment(&self.id, self.expect) {
            Ok(reader) => {
                log::info!("following {} (written by {})", self.id, self.writer);
                self.reader = Some(reader);
                self.opens += 1;
                self.just_opened = true;
                self.waiting = None;
                self.next_replaced_check = Some(now + REPLACED_CHECK_INTERVAL);
            }
            Err(e) => {
                let absent = matches!(e, OpenError::NotFound { .. } | OpenError::NotReady { .. });
                let why = if absent {
                    format!("waiting for {} (is {} running?)", self.id, self.writer)
                } else {
                    format!("cannot open {}: {e}", self.id)
                };
                if self.waiting.as_deref() != Some(why.as_str()) {
                    if absent {
                        log::info!("{why}");
                    } else {
                        log::warn!("{why}");
                    }
                    self.waiting = Some(why);
                }
            }
        }
    }

    /// The reader heard nothing for a while: check for a replaced segment at the next
    /// [`Follow::reader`] call instead of waiting for the periodic check.
    pub fn silent(&mut self) {
        self.next_replaced_check = None;
    }

    /// Reading failed in a way only a fresh open can mend: drop the reader and open again.
    pub fn reopen(&mut self, why: &dyn std::fmt::Display) {
        if self.reader.take().is_some() {
            log::warn!("{}: {why}; opening it again", self.id);
        }
        self.next_attempt = None;
        self.waiting = Some(format!("re-opening {}: {why}", self.id));
    }

    /// How many times the segment has been opened: a new value means a new reader (a display
    /// uses it as the source of a frame join).
    pub fn opens(&self) -> u64 {
        self.opens
    }

    /// True once after each open: the caller positions a fresh reader (the delay buffer resumes
    /// after what it already holds).
    pub fn take_just_opened(&mut self) -> bool {
        std::mem::take(&mut self.just_opened)
    }

    /// Why there is no reader now, for the status line; `None` while following.
    pub fn waiting(&self) -> Option<&str> {
        match self.reader {
            Some(_) => None,
            None => self.waiting.as_deref(),
        }
    }
}
