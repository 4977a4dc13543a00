//! The display's input: payloads from the received ring (net-rx's), followed through
//! keymash-pipeline, into the playout queue, from the first whole frame of each reader on.

use std::time::{Duration, Instant};

use keymash_codec::{FrameJoin, PayloadHeader};
use keymash_pipeline::{Follow, ReceivedSlot};
use keymash_present::{FrameAge, PayloadTiming, PlayoutQueue};
use keymash_shm::{monotonic_now_ns, FrameMeta, RecvError, RingReader};

/// Payloads taken from the ring per loop turn at most, so presentation is never starved.
const DRAIN_BATCH: usize = 256;

/// The received ring and what came out of it.
#[derive(Debug)]
pub(crate) struct Feed {
    ring: Follow<RingReader>,
    /// A display that (re)opens the ring joins the payloads part-way through a frame: it starts
    /// on the next whole frame instead of showing that frame's tail over a grey picture. Each
    /// open of the ring is a source of its own ([`Follow::opens`]).
    join: FrameJoin,
    buf: Vec<u8>,
    /// Payloads net-rx overwrote before the display read them.
    missed: u64,
    /// Payloads the playout queue refused (their header does not parse).
    refused: u64,
}

impl Feed {
    pub(crate) fn new(ring: Follow<RingReader>) -> Self {
        Feed {
            ring,
            join: FrameJoin::new(),
            buf: Vec::new(),
            missed: 0,
            refused: 0,
        }
    }

    /// Moves what the ring holds into `queue`, waiting at most `wait` for the first payload (or
    /// sleeping that long while there is no ring). A turn that hears nothing makes the follower
    /// check at once whether net-rx replaced the ring, so a new one is followed promptly.
    pub(crate) fn drain(&mut self, wait: Duration, queue: &mut PlayoutQueue) {
        if self.ring.reader().is_none() {
            std::thread::sleep(wait);
            return;
        }
        // Read after the open, so a new reader is a new source for the join.
        let source = self.ring.opens();
        let Feed {
            ring,
            join,
            buf,
            missed,
            refused,
        } = self;
        let Some(reader) = ring.reader() else {
            return;
        };
        let (mut wait, mut taken, mut failure) = (wait, 0usize, None);
        for _ in 0..DRAIN_BATCH {
            match reader.recv_into(wait, buf) {
                Ok(received) => {
                    *missed += received.missed;
                    taken += 1;
                    if !admit(join, source, &received.meta, buf, queue) {
                        *refused += 1;
                    }
                }
                Err(RecvError::TimedOut) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        match failure {
            Some(e) => ring.reopen(&e),
            None if taken == 0 => ring.silent(),
            None => {}
        }
    }

    /// Why there is no ring to read, for the status line.
    pub(crate) fn waiting(&self) -> Option<&str> {
        self.ring.waiting()
    }

    pub(crate) fn joined_mid_frame(&self) -> u64 {
        self.join.skipped()
    }

    pub(crate) fn missed(&self) -> u64 {
        self.missed
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused
    }
}

/// Queues the payload in `buf` unless it belongs to a frame joined part-way; false if the queue
/// refused it. A payload whose header does not parse goes on to the queue, which refuses it.
fn admit(
    join: &mut FrameJoin,
    source: u64,
    meta: &FrameMeta,
    buf: &mut Vec<u8>,
    queue: &mut PlayoutQueue,
) -> bool {
    // The slot's time is when net-rx received the payload: the playout delay counts from there.
    let slot = ReceivedSlot::read(meta);
    let age = Duration::from_nanos(monotonic_now_ns().saturating_sub(slot.arrival_ns));
    let arrival = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
    // When the camera took the frame, on this clock, by the sender's account of its age.
    let age = slot
        .camera
        .and_then(|c| FrameAge::from_arrival(arrival, c.age_at_send, c.rtt));
    let header = PayloadHeader::parse(buf).ok();
    let joined = header.is_none_or(|h| join.admit(source, &h));
    let timing = PayloadTiming {
        rtp_timestamp: slot.rtp_timestamp,
        age,
    };
    !joined
        || queue
            .push_timed(arrival, std::mem::take(buf), timing)
            .is_ok()
}
