//! What is in `/dev/shm` under a prefix: the data behind `keymash status`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::layout::SegmentKind;
use crate::name::{segment_ids, Prefix, SegmentId};
use crate::os;
use crate::segment::{remove_segment, OpenError, Segment};

/// Who produces a segment and whether they are still around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerInfo {
    /// Pid of the writer that last attached, in its PID namespace (0 if never set).
    pub pid: u32,
    /// Whether a process with that pid exists now (`kill(pid, 0)`).
    pub alive: bool,
    /// Time since the last commit or heartbeat; `None` if there never was one.
    pub heartbeat_age: Option<Duration>,
}

impl ProducerInfo {
    pub(crate) fn of(segment: &Segment) -> Self {
        let pid = segment.header().producer_pid.load(Ordering::Acquire);
        ProducerInfo {
            pid,
            alive: os::process_alive(pid),
            heartbeat_age: segment
                .heartbeat_age_ns(os::monotonic_now_ns())
                .map(Duration::from_nanos),
        }
    }
}

/// A valid segment's header, as `keymash status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub kind: SegmentKind,
    /// Ring: payload bytes per slot. Cell: value size.
    pub slot_size: usize,
    /// Ring: slots. Cell: 1.
    pub slot_count: usize,
    /// Ring: frames committed. Cell: stores completed.
    pub writes: u64,
    pub producer: ProducerInfo,
}

/// One `/dev/shm/<prefix>.*` entry: its id and either its header or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    pub id: SegmentId,
    pub info: Result<SegmentInfo, OpenError>,
}

/// Scans `/dev/shm` for `<prefix>.*`, opens each segment read-only and reports what it holds.
/// Entries whose names are not valid segment names are skipped. Sorted by name.
pub fn list_segments(prefix: &Prefix) -> std::io::Result<Vec<SegmentReport>> {
    let mut reports: Vec<SegmentReport> = segment_ids(prefix)?
        .into_iter()
        .map(|id| {
            let info = Segment::open_reader(&id, None).map(|segment| {
                let header = segment.header();
                let write_seq = header.write_seq.load(Ordering::Acquire);
                SegmentInfo {
                    kind: segment.shape.kind,
                    slot_size: segment.shape.slot_size,
                    slot_count: segment.shape.slot_count,
                    writes: match segment.shape.kind {
                        SegmentKind::Ring => write_seq,
                        SegmentKind::Cell => write_seq / 2,
                    },
                    producer: ProducerInfo::of(&segment),
                }
            });
            SegmentReport { id, info }
        })
        .collect();
    reports.sort_by(|a, b| a.id.name.cmp(&b.id.name));
    Ok(reports)
}

/// Removes every `/dev/shm/<prefix>.*` segment; returns how many. For tests, the demo and
/// `--uninstall`: processes that still map a segment keep their mapping.
pub fn remove_segments(prefix: &Prefix) -> std::io::Result<usize> {
    let mut removed = 0;
    for id in segment_ids(prefix)? {
        match remove_segment(&id) {
            Ok(()) => removed += 1,
            Err(OpenError::NotFound { .. }) => {}
            Err(other) => return Err(std::io::Error::other(other)),
        }
    }
    Ok(removed)
}

/// Removes every segment under its prefix when dropped (errors ignored): for tests, whose
/// segments must not outlive them even when an assertion fails.
#[derive(Debug)]
pub struct RemoveSegmentsOnDrop(pub Prefix);

impl Drop for RemoveSegmentsOnDrop {
    fn drop(&mut self) {
        let _ = remove_segments(&self.0);
    }
}
