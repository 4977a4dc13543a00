//! What the demo measures while the pipeline runs: the figures in the shared-memory cells, the
//! source pictures (from the delayed-frame ring, the frames the encoder codes) and the displayed
//! pictures (the display's Y4M stream, read from a FIFO), compared as PSNR.
//!
//! Why the source comes from the ring and not from the stamp: the stamp can be read off the
//! displayed picture only at codec quality 30 or more (the demo idles at 10), and the scene's
//! sensor noise is seeded with the capture process id and advances with every frame rendered.
//! The display tags each picture with its stream frame number, which is the number the frame
//! has in the delayed-frame ring, so the demo keeps the last few seconds of that ring as one
//! more reader and looks the source up by number.

use std::collections::{HashMap, VecDeque};
use std::io::Read as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keymash_codec::frame::{psnr_from_squared_error, squared_error};
use keymash_codec::{FrameGeometry, I420Frame};
use keymash_core::config::Config;
use keymash_core::FrameNo;
use keymash_pipeline::{CellSpec, MashRecord, QualityRecord, Segments, Service};
use keymash_shm::{CellReader, CellValue, RingReader, SegmentId, ServiceStats};

/// Source pictures kept for lookup: the display shows a frame well within this many frames
/// (playout delay plus transport) after the encoder took it.
const SOURCE_FRAMES_KEPT: usize = 120;
/// Pictures kept per mashing band for the contact sheet, one at most every [`SHEET_SPACING`].
const SHEET_CANDIDATES: usize = 48;
const SHEET_SPACING: Duration = Duration::from_millis(500);
/// Mash levels counted as "low" and "high" for the contact sheet and the summary.
pub(super) const LOW_MASH: f32 = 0.1;
pub(super) const HIGH_MASH: f32 = 0.8;

/// From when on in the run the displayed pictures show the scene at the idle figures: the
/// delay buffer shows its countdown card for the first `delay.seconds`, and the loss filter
/// measures its first whole second after that.
pub(super) fn settled_after(config: &Config) -> Duration {
    Duration::from_secs_f64(config.delay.seconds.max(0.0) + 1.0).max(Duration::from_secs(2))
}

/// A cell reader opened on first use and reopened after a failure (the writer may start late).
/// Not a `keymash_pipeline::Follow`: the demo polls quietly, where a follower would log each
/// stage's cell appearing in the middle of the demo's table.
#[derive(Debug)]
struct LazyCell<T: CellValue> {
    id: SegmentId,
    reader: Option<CellReader<T>>,
}

impl<T: CellValue> LazyCell<T> {
    fn new(cell: &CellSpec<T>) -> Self {
        LazyCell {
            id: cell.id().clone(),
            reader: None,
        }
    }

    fn load(&mut self) -> Option<T> {
        if self.reader.is_none() {
            self.reader = CellReader::open(&self.id).ok();
        }
        let value = self.reader.as_ref()?.load();
        if value.is_err() {
            self.reader = None;
        }
        value.ok()
    }
}

/// The live figures of the pipeline, read from its cells.
#[derive(Debug)]
pub(super) struct Probe {
    mash: LazyCell<MashRecord>,
    quality: LazyCell<QualityRecord>,
    stats: Vec<(Service, LazyCell<ServiceStats>)>,
}

/// One reading of [`Probe`].
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Figures {
    pub mash: Option<f32>,
    /// Percent of video packets the eBPF filter dropped over its last second (kernel counters).
    pub drop_percent: Option<f64>,
    pub quality: Option<u8>,
    pub fps: Option<f64>,
    pub bytes_per_frame: Option<f64>,
}

impl Probe {
    pub(super) fn new(config: &Config) -> anyhow::Result<Self> {
        let segments = Segments::new(config)?;
        let stats = Service::ALL
            .into_iter()
            .map(|s| Ok((s, LazyCell::new(&segments.stats_cell(s)?))))
            .collect::<anyhow::Result<_>>()?;
        Ok(Probe {
            mash: LazyCell::new(&segments.mash_cell()?),
            quality: LazyCell::new(&segments.quality_cell()?),
            stats,
        })
    }

    /// `service`'s statistics, if it has published any.
    pub(super) fn stats(&mut self, service: Service) -> Option<ServiceStats> {
        self.stats.iter_mut().find(|(s, _)| *s == service)?.1.load()
    }

    pub(super) fn read(&mut self) -> Figures {
        let gauge =
            |probe: &mut Probe, service, name| probe.stats(service).and_then(|s| s.gauge(name));
        Figures {
            mash: self.mash.load().map(|m| m.level().get()),
            drop_percent: gauge(self, Service::LossController, "drop_percent"),
            quality: self
                .quality
                .load()
                .and_then(|q| q.quality())
                .map(|q| q.get()),
            fps: gauge(self, Service::Display, "fps"),
            bytes_per_frame: gauge(self, Service::Encoder, "bytes_per_frame"),
        }
    }
}

/// The luma of the last [`SOURCE_FRAMES_KEPT`] frames the encoder took, by frame number.
#[derive(Debug, Default)]
struct SourceStore {
    luma: HashMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
}

impl SourceStore {
    fn insert(&mut self, frame: FrameNo, luma: &[u8]) {
        if self.luma.insert(frame.0, luma.to_vec()).is_none() {
            self.order.push_back(frame.0);
        }
        while self.order.len() > SOURCE_FRAMES_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.luma.remove(&old);
            }
        }
    }
}

/// A displayed picture kept for the contact sheet, with the figures at the time it was shown.
#[derive(Debug, Clone)]
pub(super) struct Shown {
    pub at: Duration,
    pub picture: I420Frame,
    pub figures: Figures,
    pub psnr: Option<f64>,
}

/// What the watcher threads hand to the demo.
#[derive(Debug, Default)]
pub(super) struct Observations {
    /// PSNR of each picture displayed since the last [`Watcher::take_psnr`] (None: no source).
    psnr: Vec<Option<f64>>,
    pub low: Vec<Shown>,
    pub high: Vec<Shown>,
    pub pictures: u64,
    pub error: Option<String>,
}

/// The two threads: one keeps the source pictures, one reads the displayed ones.
#[derive(Debug)]
pub(super) struct Watcher {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    observations: Arc<Mutex<Observations>>,
    /// When the run proper began (the scripted visitor started); pictures before are not kept.
    run_start: Arc<Mutex<Option<Instant>>>,
}

impl Watcher {
    /// Starts reading the display's Y4M stream from `fifo` (opened at once, without waiting for
    /// the display) and, once delay-buffer has created it, the delayed-frame ring. With `keep`,
    /// the displayed stream is also written to that file.
    pub(super) fn start(
        config: &Config,
        fifo: &Path,
        keep: Option<&Path>,
    ) -> anyhow::Result<Watcher> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let stop = Arc::new(AtomicBool::new(false));
        let observations = Arc::new(Mutex::new(Observations::default()));
        let run_start = Arc::new(Mutex::new(None));
        let sources = Arc::new(Mutex::new(SourceStore::default()));
        let picture =
            FrameGeometry::new(config.video.width as usize, config.video.height as usize)?;
        let (canvas, border) =
            keymash_present::headless_canvas(picture, config.display.glow_border_px)?;
        let stream = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(fifo)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", fifo.display()))?;
        let copy = keep
            .map(std::fs::File::create)
            .transpose()?
            .map(std::io::BufWriter::new);
        let ring = Segments::new(config)?.delayed_frames()?.id().clone();

        let source_thread = {
            let (stop, sources) = (Arc::clone(&stop), Arc::clone(&sources));
            std::thread::spawn(move || keep_sources(&ring, picture.luma_len(), &stop, &sources))
        };
        let display_thread = {
            let mut reader = DisplayReader {
                canvas,
                border,
                picture,
                probe: Probe::new(config)?,
                sources,
                observations: Arc::clone(&observations),
                run_start: Arc::clone(&run_start),
                last_kept: [None, None],
                settled: settled_after(config),
            };
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                if let Err(e) = reader.run(stream, copy, &stop) {
                    reader
                        .observations
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .error = Some(format!("{e:#}"));
                }
            })
        };
        Ok(Watcher {
            stop,
            threads: vec![source_thread, display_thread],
            observations,
            run_start,
        })
    }

    pub(super) fn begin_run(&self, now: Instant) {
        *self.run_start.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
    }

    /// PSNR of the pictures displayed since the last call, and how many had no source.
    pub(super) fn take_psnr(&self) -> Vec<Option<f64>> {
        std::mem::take(
            &mut self
                .observations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .psnr,
        )
    }

    /// Stops both threads and returns what they saw.
    pub(super) fn finish(mut self) -> Observations {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        std::mem::take(&mut *self.observations.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Copies the luma of every frame the encoder can take into `sources`, as one more reader of
/// the delayed-frame ring (which it waits for until delay-buffer has made it).
fn keep_sources(
    ring: &SegmentId,
    luma_len: usize,
    stop: &AtomicBool,
    sources: &Mutex<SourceStore>,
) {
    let mut reader = None;
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(ring_reader) = reader.as_mut() else {
            reader = RingReader::open(ring).ok();
            if reader.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        };
        if ring_reader.next(Duration::from_millis(100)).is_err() {
            continue;
        }
        if let Ok(meta) = ring_reader.read_into(&mut buf) {
            if buf.len() >= luma_len {
                sources
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(meta.frame(), &buf[..luma_len]);
            }
        }
    }
}

struct DisplayReader {
    canvas: FrameGeometry,
    border: usize,
    picture: FrameGeometry,
    probe: Probe,
    sources: Arc<Mutex<SourceStore>>,
    observations: Arc<Mutex<Observations>>,
    run_start: Arc<Mutex<Option<Instant>>>,
    /// When a picture was last kept for the low and the high band.
    last_kept: [Option<Duration>; 2],
    /// See [`settled_after`].
    settled: Duration,
}

impl DisplayReader {
    /// Reads the Y4M stream as it comes (non-blocking, so a display that never starts or has
    /// gone does not hold the demo up) and takes in every complete picture.
    fn run(
        &mut self,
        mut stream: std::fs::File,
        mut copy: Option<impl std::io::Write>,
        stop: &AtomicBool,
    ) -> anyhow::Result<()> {
        let frame_len = self.canvas.luma_len() + 2 * self.canvas.chroma_len();
        let mut pending: Vec<u8> = Vec::new();
        let mut header_seen = false;
        let mut chunk = vec![0u8; 1 << 16];
        while !stop.load(Ordering::Relaxed) {
            match stream.read(&mut chunk) {
                Ok(n) if n > 0 => {
                    if let Some(copy) = copy.as_mut() {
                        copy.write_all(&chunk[..n])?;
                    }
                    pending.extend_from_slice(&chunk[..n]);
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(5)), // no writer (yet, or any more)
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => return Err(e.into()),
            }
            while let Some(line_end) = pending.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&pending[..line_end]).into_owned();
                if !header_seen {
                    anyhow::ensure!(
                        line.starts_with("YUV4MPEG2 "),
                        "the display's stream is not Y4M: {line:?}"
                    );
                    let expected = format!("W{} H{}", self.canvas.width(), self.canvas.height());
                    anyhow::ensure!(
                        line.contains(&expected),
                        "the display's pictures are not {expected}: {line:?}"
                    );
                    header_seen = true;
                    pending.drain(..=line_end);
                    continue;
                }
                if pending.len() < line_end + 1 + frame_len {
                    break;
                }
                // The signal-lost card is no frame of the stream: nothing to compare it with.
                if keymash_present::is_card(&line).is_some() {
                    pending.drain(..line_end + 1 + frame_len);
                    continue;
                }
                let frame = keymash_present::frame_tag(&line).ok_or_else(|| {
                    anyhow::anyhow!("untagged picture in the display's stream: {line:?}")
                })?;
                let data = &pending[line_end + 1..line_end + 1 + frame_len];
                let canvas = I420Frame::from_planes(
                    self.canvas,
                    data[..self.canvas.luma_len()].to_vec(),
                    data[self.canvas.luma_len()..self.canvas.luma_len() + self.canvas.chroma_len()]
                        .to_vec(),
                    data[self.canvas.luma_len() + self.canvas.chroma_len()..].to_vec(),
                )?;
                self.take(frame, &canvas);
                pending.drain(..line_end + 1 + frame_len);
            }
        }
        if let Some(mut copy) = copy {
            copy.flush()?;
        }
        Ok(())
    }

    fn take(&mut self, frame: FrameNo, canvas: &I420Frame) {
        let Some(picture) = keymash_present::picture_of_headless(canvas, self.border, self.picture)
        else {
            return;
        };
        let psnr = self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .luma
            .get(&frame.0)
            .map(|source| {
                psnr_from_squared_error(squared_error(source, picture.y()), source.len() as u64)
            });
        let run_start = *self.run_start.lock().unwrap_or_else(|p| p.into_inner());
        let mut shown = None;
        if let Some(start) = run_start {
            let at = start.elapsed();
            let figures = self.probe.read();
            let opening = self.last_kept[1].is_none();
            let band = match figures.mash {
                // Low: the opening idle stretch only (not the decay after the mashing), once
                // settled (no countdown card, the filter's drop measured).
                Some(m) if m < LOW_MASH && opening && at >= self.settled => Some(0),
                Some(m) if m >= HIGH_MASH => Some(1),
                _ => None,
            };
            if let Some(band) = band {
                if self.last_kept[band].is_none_or(|last| at >= last + SHEET_SPACING) {
                    self.last_kept[band] = Some(at);
                    shown = Some((
                        band,
                        Shown {
                            at,
                            picture,
                            figures,
                            psnr,
                        },
                    ));
                }
            }
        }
        let mut observations = self.observations.lock().unwrap_or_else(|p| p.into_inner());
        observations.pictures += 1;
        observations.psnr.push(psnr);
        if let Some((band, shown)) = shown {
            let list = if band == 0 {
                &mut observations.low
            } else {
                &mut observations.high
            };
            if list.len() < SHEET_CANDIDATES {
                list.push(shown);
            }
        }
    }
}
