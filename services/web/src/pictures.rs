//! The JPEG thread: follows the display's screen ring and, while someone wants a picture
//! (stream viewers, a snapshot waiting), encodes the newest one at most `web.stream_fps` times a
//! second and publishes it through a `watch` channel. A viewer that reads slowly only ever gets
//! the newest picture; the encoding happens once, whatever the number of viewers, and never on
//! the runtime that serves the clients, nor inside a pipeline stage (the ring is only read).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keymash_core::config::VideoConfig;
use keymash_core::FrameNo;
use keymash_pipeline::{Follow, ScreenSlot};
use keymash_shm::{ReadError, RecvError, RingReader};
use keymash_watch::jpeg::encode_i420;

use crate::mjpeg;
use crate::shared::Shared;

/// How long the thread sleeps while nobody wants a picture or there is no screen ring (a
/// request wakes it at once; the ring is looked for again after this).
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// The longest wait for a new picture on the ring before the thread looks at demand and the
/// stop flag again.
const FRAME_WAIT: Duration = Duration::from_millis(100);

/// A picture of the screen as JPEG.
#[derive(Debug)]
pub(crate) struct Picture {
    /// Counts encodes: a new number is a new picture (viewers send only new ones).
    pub(crate) number: u64,
    /// The stream frame it shows.
    pub(crate) frame: FrameNo,
    /// It is the signal-lost card.
    pub(crate) card: bool,
    pub(crate) jpeg: Bytes,
    /// The MJPEG part holding it (see [`mjpeg::part`]).
    pub(crate) part: Bytes,
    /// When the thread last saw it was still the newest picture on the screen: a snapshot
    /// takes a picture checked after its request.
    pub(crate) checked_at: Instant,
}

/// What the thread publishes: the newest picture, once there is one.
pub(crate) type Published = Option<Arc<Picture>>;

/// The thread's state.
#[derive(Debug)]
pub(crate) struct Encoder {
    follow: Follow<RingReader>,
    video: VideoConfig,
    quality: u8,
    interval: Duration,
    shared: Arc<Shared>,
    /// The open of the ring that `last_seq` belongs to ([`Follow::opens`]).
    opens: u64,
    /// The ring sequence number last taken (encoded or refused).
    last_seq: Option<u64>,
    /// No encode before this (the stream rate).
    not_before: Option<Instant>,
    number: u64,
    picture: Vec<u8>,
    jpeg: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new(
        follow: Follow<RingReader>,
        video: VideoConfig,
        quality: u8,
        shared: Arc<Shared>,
    ) -> Self {
        let mut encoder = Encoder {
            follow,
            video,
            quality,
            interval: Duration::from_secs(1) / shared.settings.stream_fps.max(1),
            shared,
            opens: 0,
            last_seq: None,
            not_before: None,
            number: 0,
            picture: Vec::new(),
            jpeg: Vec::new(),
        };
        // The first look for the screen ring happens before the service says it is ready, so
        // a request right after that is not told there is no picture when there is one.
        encoder.look();
        encoder
    }

    /// Opens the screen ring if it is there, and says whether it is; true if it is followed.
    fn look(&mut self) -> bool {
        let followed = self.follow.reader().is_some();
        self.shared.set_absent(self.follow.waiting());
        followed
    }

    /// Runs until the service stops.
    pub(crate) fn run(mut self) {
        while !self.shared.quit.load(Ordering::Relaxed) {
            self.shared.beat_encoder();
            self.turn();
        }
    }

    /// One look at the ring and the demand; blocks at most [`IDLE_WAIT`] (or one encode).
    fn turn(&mut self) {
        if !self.look() {
            std::thread::park_timeout(IDLE_WAIT);
            return;
        }
        if self.follow.opens() != self.opens {
            // A new ring (the display recreated it): its sequence numbers start afresh.
            self.opens = self.follow.opens();
            self.last_seq = None;
        }
        if !self.shared.demand.wanted() {
            std::thread::park_timeout(IDLE_WAIT);
            return;
        }
        let now = Instant::now();
        if let Some(at) = self.not_before.filter(|&at| now < at) {
            std::thread::sleep(at - now);
            return;
        }
        let Some(newest) = self.follow.reader().map(|r| r.write_seq().checked_sub(1)) else {
            return;
        };
        match newest.filter(|&seq| Some(seq) != self.last_seq) {
            Some(seq) => {
                let Some(reader) = self.follow.reader() else {
                    return;
                };
                let read = reader.read_seq_into(seq, &mut self.picture);
                // Wait for what comes after it next time.
                reader.seek(seq + 1);
                match read {
                    Ok(meta) => {
                        self.last_seq = Some(seq);
                        self.not_before = Some(now + self.interval);
                        self.encode(&meta);
                    }
                    // Lapped while copying (the display writes a picture per frame into three
                    // slots): take the newest again next turn.
                    Err(ReadError::Overwritten { .. } | ReadError::NotYetWritten { .. }) => {}
                    Err(e) => self.follow.reopen(&e),
                }
            }
            None => {
                // Nothing new on the screen: a snapshot waiting gets the picture it shows.
                if self.shared.demand.snapshots() > 0 {
                    self.republish();
                }
                let Some(reader) = self.follow.reader() else {
                    return;
                };
                match reader.next(FRAME_WAIT) {
                    Ok(_) => {}
                    Err(RecvError::TimedOut) => self.follow.silent(),
                    Err(e) => self.follow.reopen(&e),
                }
            }
        }
    }

    /// Encodes the picture just read (described by `meta`) and publishes it.
    fn encode(&mut self, meta: &keymash_shm::FrameMeta) {
        let slot = match ScreenSlot::read(meta, &self.video, self.picture.len()) {
            Ok(slot) => slot,
            Err(e) => {
                self.failed(format!(
                    "the screen segment holds a picture this service cannot read: {e}"
                ));
                return;
            }
        };
        let started = Instant::now();
        let encoded = encode_i420(
            &self.picture,
            self.video.width,
            self.video.height,
            self.quality,
            &mut self.jpeg,
        );
        if let Err(e) = encoded {
            self.failed(format!("cannot encode the screen picture as JPEG: {e}"));
            return;
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.shared.counters.count_encode(micros);
        if self.shared.encode_error().is_some() {
            log::info!("screen pictures are encoded again");
            self.shared.set_encode_error(None);
        }
        self.number += 1;
        let jpeg = Bytes::copy_from_slice(&self.jpeg);
        let picture = Picture {
            number: self.number,
            frame: slot.frame,
            card: slot.card,
            part: mjpeg::part(&jpeg),
            jpeg,
            checked_at: Instant::now(),
        };
        self.shared.pictures.send_replace(Some(Arc::new(picture)));
    }

    /// The picture published last is still the newest: say so with a new check time.
    fn republish(&self) {
        let current = self.shared.pictures.borrow().clone();
        if let Some(current) = current {
            let picture = Picture {
                number: current.number,
                frame: current.frame,
                card: current.card,
                jpeg: current.jpeg.clone(),
                part: current.part.clone(),
                checked_at: Instant::now(),
            };
            self.shared.pictures.send_replace(Some(Arc::new(picture)));
        }
    }

    /// A picture could not be published: logged once per distinct reason, kept for the 503 of
    /// a snapshot.
    fn failed(&self, why: String) {
        if self.shared.encode_error().as_deref() != Some(why.as_str()) {
            log::warn!("{why}");
            self.shared.set_encode_error(Some(why));
        }
    }
}
