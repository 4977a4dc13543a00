//! The one way a service follows a segment another process writes.
//!
//! A [`Follow`] opens the producer's segment once it exists, re-opens it when the producer
//! replaced it (a new segment under the same name, told by its inode through
//! [`keymash_shm::RingReader::is_replaced`], not guessed from silence), and logs each
//! transition once: waiting, following, replaced, refused. Silence is only a hint: a reader
//! that hears nothing calls [`Follow::silent`] and the replacement check runs at once instead of
//! at its next period. While there is no reader, [`Follow::waiting`] says why, for the
//! service's status line.
//!
//! Every failure but "not there yet" is logged at warn, once per distinct failure, with what
//! to do about it ([`explain_open_error`]): permission denied names the segment's owner, group
//! and mode and the group to join; a segment of another shape or build names the writer to
//! restart. A segment still missing after [`MISSING_WARN_AFTER`] is warned about once, naming
//! the service that creates it. [`Follow::waiting`] returns the short form, which a status line
//! (128 bytes in a statistics cell) holds: the segment and the one thing to do.

use std::path::Path;
use std::time::{Duration, Instant};

use keymash_shm::{CellReader, CellValue, OpenError, RingGeometry, RingReader, SegmentId};

use crate::access::{denied_advice, denied_short, FileAccess, ProcessUser};

/// How often a missing segment is looked for again.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// How often a followed segment is checked for replacement while data flows (one `stat`).
pub const REPLACED_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long a missing segment is waited for at info level: a writer starting beside its
/// readers creates it within this time; after it, one warning names the service to start.
pub const MISSING_WARN_AFTER: Duration = Duration::from_secs(5);

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
    /// Why there is no reader, and what has been logged about it.
    waiting: Waiting,
}

impl<R: Followable> Follow<R> {
    pub(crate) fn new(id: SegmentId, expect: R::Expect, writer: &'static str) -> Self {
        let waiting = Waiting::not_opened(&id);
        Follow {
            id,
            expect,
            writer,
            reader: None,
            opens: 0,
            just_opened: false,
            next_attempt: None,
            next_replaced_check: None,
            waiting,
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
                self.waiting.opened();
                self.next_replaced_check = Some(now + REPLACED_CHECK_INTERVAL);
            }
            Err(e) => {
                let path = self.id.path();
                let path = Path::new(&path);
                let why = explain_open_error(&self.id, self.writer, &e, || {
                    (FileAccess::of(path), ProcessUser::current())
                });
                if let Some(line) = self.waiting.failed(why, now, &self.id, self.writer) {
                    log::log!(line.level, "{}", line.text);
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
        self.waiting
            .reopening(format!("re-opening {}: {why}", self.id));
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
            None => Some(self.waiting.text()),
        }
    }
}

/// Why a follower has no reader, for the status line and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFailure {
    /// The segment is not there yet (or still being built): expected while its writer starts.
    pub absent: bool,
    /// What is wrong and what to do about it, in full, for the log.
    pub text: String,
    /// The same in short, for a status line (a statistics cell holds 128 bytes of it): the
    /// segment and the one thing to do.
    pub status: String,
}

/// What a failed open of `id` (written by `writer`) means for the operator. `access` is asked
/// for the segment's owner, group and mode and this process's user only when permission was
/// denied.
pub fn explain_open_error(
    id: &SegmentId,
    writer: &str,
    err: &OpenError,
    access: impl FnOnce() -> (Option<FileAccess>, Option<ProcessUser>),
) -> OpenFailure {
    let path = id.path();
    let failure = |text: String, status: String| OpenFailure {
        absent: false,
        text,
        status,
    };
    match err {
        OpenError::NotFound { .. } | OpenError::NotReady { .. } => {
            // `keymash status` readers (and tests) parse this form: keep it.
            let status = format!("waiting for {id} (is {writer} running?)");
            OpenFailure {
                absent: true,
                text: status.clone(),
                status,
            }
        }
        OpenError::InsufficientPermissions { .. } => {
            let (file, user) = access();
            let (file, user) = (file.as_ref(), user.as_ref());
            failure(
                denied_advice("segment", Path::new(&path), file, user, "keymash"),
                denied_short(&path, file, user, "keymash"),
            )
        }
        OpenError::GeometryMismatch { .. } => failure(
            format!(
                "cannot open {err}: {writer} runs with another configuration or has not \
                 replaced it yet; restart {writer} with this service's configuration (it \
                 replaces a ring of another shape)"
            ),
            format!("{id} holds another shape: restart {writer}"),
        ),
        OpenError::VersionMismatch { .. } | OpenError::WrongKind { .. } => failure(
            format!(
                "cannot open {err}: it was made by another build of keymash; stop {writer}, \
                 remove {path} and start {writer} of this build"
            ),
            format!("{id} is of another build: remove it, restart {writer}"),
        ),
        OpenError::BadMagic { .. }
        | OpenError::Truncated { .. }
        | OpenError::Oversized { .. }
        | OpenError::CorruptHeader { .. } => failure(
            format!("cannot open {err}: stop {writer}, remove {path} and start {writer} again"),
            format!("{id} is damaged: remove it, restart {writer}"),
        ),
        // Writer-side refusals and errors of the system: the error says it all. (A wildcard,
        // not a list: a kind of failure added to keymash-shm must still be shown.)
        _ => failure(format!("cannot open {err}"), format!("cannot open {err}")),
    }
}

/// A line to log, at its level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: log::Level,
    pub text: String,
}

/// Why a follower has no reader and what it has logged about it (sans-IO: fed each failed
/// open and its time): each distinct failure is logged once, "not there yet" at info and again
/// once at warn after [`MISSING_WARN_AFTER`], every other failure at warn.
#[derive(Debug, Clone)]
pub struct Waiting {
    text: String,
    /// The failure last logged (the status text changes when a missing segment is warned about).
    last: Option<OpenFailure>,
    missing_since: Option<Instant>,
    missing_warned: bool,
}

impl Default for Waiting {
    fn default() -> Self {
        Waiting::new()
    }
}

impl Waiting {
    pub fn new() -> Self {
        Waiting {
            text: "not opened yet".to_owned(),
            last: None,
            missing_since: None,
            missing_warned: false,
        }
    }

    /// Before the first attempt: the text names the segment.
    pub fn not_opened(id: &SegmentId) -> Self {
        Waiting {
            text: format!("{id} not opened yet"),
            ..Waiting::new()
        }
    }

    /// The text for the status line (the short form of what was logged).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// An open failed at `now` with `failure`: the line to log, if any.
    pub fn failed(
        &mut self,
        failure: OpenFailure,
        now: Instant,
        id: &SegmentId,
        writer: &str,
    ) -> Option<LogLine> {
        if self.last.as_ref() != Some(&failure) {
            self.text.clone_from(&failure.status);
            let level = if failure.absent {
                // A segment that disappeared and is missing again counts from now.
                if !self.last.as_ref().is_some_and(|l| l.absent) {
                    self.missing_since = Some(now);
                    self.missing_warned = false;
                }
                log::Level::Info
            } else {
                self.missing_since = None;
                log::Level::Warn
            };
            self.last = Some(failure.clone());
            return Some(LogLine {
                level,
                text: failure.text,
            });
        }
        let overdue = self
            .missing_since
            .is_some_and(|since| now.saturating_duration_since(since) >= MISSING_WARN_AFTER);
        if failure.absent && overdue && !self.missing_warned {
            self.missing_warned = true;
            // The status keeps its "waiting for" form, which names the writer already.
            return Some(LogLine {
                level: log::Level::Warn,
                text: format!(
                    "{id} still missing after {} s: {writer} creates it; start it (`systemctl \
                     start {writer}`) or see why it does not run (`journalctl -u {writer}`)",
                    MISSING_WARN_AFTER.as_secs()
                ),
            });
        }
        None
    }

    /// The segment was opened: the next failure is news again.
    pub fn opened(&mut self) {
        *self = Waiting::new();
    }

    /// The reader was dropped to be opened again (logged by the caller).
    pub fn reopening(&mut self, text: String) {
        *self = Waiting::new();
        self.text = text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymash_shm::{Prefix, SegmentName};

    fn id() -> SegmentId {
        SegmentId::new(
            Prefix::new("keymash").unwrap(),
            SegmentName::new("received").unwrap(),
        )
    }

    fn explain(err: OpenError) -> OpenFailure {
        explain_open_error(&id(), "keymash-net-rx", &err, || {
            (
                Some(FileAccess {
                    uid: 0,
                    gid: 990,
                    owner: Some("root".to_owned()),
                    group: Some("keymash".to_owned()),
                    mode: 0o660,
                }),
                Some(ProcessUser {
                    uid: 1000,
                    name: Some("alice".to_owned()),
                    gids: vec![1000],
                }),
            )
        })
    }

    fn segment() -> String {
        id().to_string()
    }

    #[test]
    fn every_open_failure_says_what_to_do() {
        let missing = explain(OpenError::NotFound { segment: segment() });
        assert!(missing.absent);
        assert!(missing.text.contains("keymash-net-rx"), "{}", missing.text);

        let denied = explain(OpenError::InsufficientPermissions { segment: segment() });
        assert!(!denied.absent);
        for needed in [
            "/dev/shm/keymash.received",
            "group `keymash`",
            "usermod -aG keymash alice",
        ] {
            assert!(denied.text.contains(needed), "{needed:?}: {}", denied.text);
        }

        let cases = [
            OpenError::GeometryMismatch {
                segment: segment(),
                expected: "4096 slots x 2048 B".to_owned(),
                found: "4 slots x 64 B".to_owned(),
            },
            OpenError::VersionMismatch {
                segment: segment(),
                found: 1,
                expected: 2,
            },
            OpenError::Truncated {
                segment: segment(),
                file_len: 4096,
                needed: 8192,
            },
            OpenError::BadMagic {
                segment: segment(),
                found: 0,
            },
        ];
        for err in cases {
            let failure = explain(err.clone());
            assert!(!failure.absent, "{err}");
            assert!(
                failure.status.contains("restart keymash-net-rx"),
                "{}",
                failure.status
            );
            assert!(
                failure.text.contains(&err.to_string())
                    && failure.text.contains("start keymash-net-rx"),
                "{err}: {}",
                failure.text
            );
        }
    }

    #[test]
    fn each_failure_is_logged_once_and_a_long_absence_once_at_warn() {
        let (id, writer) = (id(), "keymash-net-rx");
        let t0 = Instant::now();
        let mut waiting = Waiting::new();
        let missing = explain(OpenError::NotFound { segment: segment() });
        let first = waiting.failed(missing.clone(), t0, &id, writer).unwrap();
        assert_eq!(first.level, log::Level::Info);
        // Retried every 100 ms: nothing new to say until the absence is overdue.
        for tenth in 1..50 {
            let at = t0 + Duration::from_millis(100 * tenth);
            assert_eq!(waiting.failed(missing.clone(), at, &id, writer), None);
        }
        let overdue = waiting
            .failed(missing.clone(), t0 + MISSING_WARN_AFTER, &id, writer)
            .unwrap();
        assert_eq!(overdue.level, log::Level::Warn);
        assert!(
            overdue.text.contains("systemctl start keymash-net-rx"),
            "{}",
            overdue.text
        );
        assert_eq!(waiting.text(), missing.status);
        assert_eq!(
            waiting.failed(missing.clone(), t0 + MISSING_WARN_AFTER * 3, &id, writer),
            None
        );

        // Permission denied: at once at warn, once.
        let denied = explain(OpenError::InsufficientPermissions { segment: segment() });
        let line = waiting.failed(denied.clone(), t0, &id, writer).unwrap();
        assert_eq!(line.level, log::Level::Warn);
        assert_eq!(waiting.text(), denied.status);
        assert!(denied.status.len() <= 128, "{}", denied.status);
        assert_eq!(
            waiting.failed(denied, t0 + Duration::from_secs(60), &id, writer),
            None
        );

        // Missing again after that: counted afresh.
        let t1 = t0 + Duration::from_secs(100);
        assert_eq!(
            waiting
                .failed(missing.clone(), t1, &id, writer)
                .unwrap()
                .level,
            log::Level::Info
        );
        assert_eq!(
            waiting.failed(missing.clone(), t1 + Duration::from_secs(4), &id, writer),
            None
        );
        assert!(waiting
            .failed(missing, t1 + MISSING_WARN_AFTER, &id, writer)
            .is_some());
    }
}
