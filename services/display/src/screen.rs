//! The picture on the screen, published into the pipeline's `screen` ring for keymash-web (the
//! live picture, the snapshot) and keymash-archive: one copy of the picture per new frame, and
//! one when the signal-lost card first shows or changes. No reader can slow this: the ring's
//! writer never waits.

use std::time::{Duration, Instant};

use anyhow::Context;
use keymash_codec::I420Frame;
use keymash_core::config::VideoConfig;
use keymash_pipeline::{ScreenSlot, Segments};
use keymash_shm::RingWriter;

/// Writes presented pictures into the screen ring.
pub(crate) struct ScreenPublisher {
    ring: RingWriter,
    video: VideoConfig,
    published: u64,
    /// Time spent copying pictures into the ring, in total (its mean is the cost per picture).
    spent: Duration,
}

impl ScreenPublisher {
    /// Creates (or re-attaches to) the screen ring.
    pub(crate) fn open(segments: &Segments, video: VideoConfig) -> anyhow::Result<Self> {
        let (ring, _attach) = segments
            .screen()?
            .create()
            .context("the screen segment (display.publish_picture)")?;
        Ok(ScreenPublisher {
            ring,
            video,
            published: 0,
            spent: Duration::ZERO,
        })
    }

    /// Copies `picture` into the next slot, described by `slot`. A picture of another size than
    /// the ring's (which cannot happen: both come from `video`) is skipped with a log line
    /// rather than stopping the screen.
    pub(crate) fn publish(&mut self, picture: &I420Frame, slot: &ScreenSlot) {
        let start = Instant::now();
        let (y, u, v) = (picture.y(), picture.u(), picture.v());
        let len = y.len() + u.len() + v.len();
        let slot_size = self.ring.geometry().slot_size();
        let mut write = self.ring.begin();
        let Some(out) = write.payload_mut().get_mut(..len) else {
            log::error!(
                "a {} picture does not fit the screen ring's {slot_size}-byte slots",
                picture.geometry()
            );
            return;
        };
        let (out_y, rest) = out.split_at_mut(y.len());
        let (out_u, out_v) = rest.split_at_mut(u.len());
        out_y.copy_from_slice(y);
        out_u.copy_from_slice(u);
        out_v.copy_from_slice(v);
        if let Err(e) = write.commit(len, &slot.meta(&self.video)) {
            log::error!("cannot publish the picture: {e}");
            return;
        }
        self.published += 1;
        self.spent += start.elapsed();
    }

    /// Keeps the ring's heartbeat fresh while no new picture comes (the signal is lost).
    pub(crate) fn heartbeat(&self) {
        self.ring.heartbeat();
    }

    /// Pictures published so far.
    pub(crate) fn published(&self) -> u64 {
        self.published
    }

    /// Microseconds spent publishing, in total.
    pub(crate) fn spent_us(&self) -> u64 {
        u64::try_from(self.spent.as_micros()).unwrap_or(u64::MAX)
    }
}
