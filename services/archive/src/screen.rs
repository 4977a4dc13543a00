//! The archive's input: the newest picture in the screen ring (the display's), followed
//! through keymash-pipeline.

use std::time::Duration;

use keymash_core::config::VideoConfig;
use keymash_pipeline::{Follow, ScreenSlot};

use keymash_shm::{RecvError, RingReader};

/// A picture taken from the screen ring.
#[derive(Debug)]
pub(crate) struct Picture<'a> {
    pub(crate) i420: &'a [u8],
    /// Not the picture taken last time (another slot, or another ring).
    pub(crate) fresh: bool,
}

/// The screen ring and the picture last taken from it.
#[derive(Debug)]
pub(crate) struct Screen {
    ring: Follow<RingReader>,
    video: VideoConfig,
    picture: Vec<u8>,
    /// The ring (its open count) and slot of the picture taken last.
    last: Option<(u64, u64)>,
    /// The last refusal logged, so a display of another shape is reported once, not each tick.
    refused: Option<String>,
}

impl Screen {
    pub(crate) fn new(ring: Follow<RingReader>, video: VideoConfig) -> Self {
        Screen {
            ring,
            video,
            picture: Vec::new(),
            last: None,
            refused: None,
        }
    }

    /// The newest picture in the ring and its description, or `None` while there is no ring or
    /// no picture in it. The newest picture is taken again when the display published nothing
    /// since (signal lost, the card, a stopped display): the screen still shows it.
    pub(crate) fn newest(&mut self) -> Option<Picture<'_>> {
        self.ring.reader()?;
        // Read after the open: a new reader numbers its slots afresh.
        let opens = self.ring.opens();
        let reader = self.ring.reader()?;
        reader.seek_to_newest();
        match reader.recv_into(Duration::ZERO, &mut self.picture) {
            Ok(received) => {
                match ScreenSlot::read(&received.meta, &self.video, self.picture.len()) {
                    Ok(_) => {
                        self.refused = None;
                        let taken = Some((opens, received.seq));
                        let fresh = self.last != taken;
                        self.last = taken;
                        Some(Picture {
                            i420: &self.picture,
                            fresh,
                        })
                    }
                    Err(e) => {
                        let why = e.to_string();
                        if self.refused.as_ref() != Some(&why) {
                            log::warn!(
                                "{}: a picture the archive cannot record ({why}); is the \
                                 display running with this configuration?",
                                self.ring.id()
                            );
                            self.refused = Some(why);
                        }
                        None
                    }
                }
            }
            // Nothing written yet.
            Err(RecvError::TimedOut) => None,
            Err(e) => {
                self.ring.reopen(&e);
                None
            }
        }
    }

    /// Why there is no ring to read, for the status line.
    pub(crate) fn waiting(&self) -> Option<&str> {
        self.ring.waiting()
    }
}
