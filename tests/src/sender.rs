//! Support for the sender's integration tests (`tests/tests/sender_*.rs`): the four sender
//! services as real processes with a private configuration (shm prefix, loopback ports), killed
//! and their segments removed on drop, and a test receiver of their UDP stream that decodes the
//! pictures and reads the stamp back from the pixels.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keymash_codec::{Decoder, FrameGeometry, FrameJoin, PayloadHeader};
use keymash_core::config::Config;
use keymash_core::{MashLevel, Quality};
use keymash_media::{read_stamp, Stamp};
use keymash_pipeline::{QualityRecord, QUALITY_CELL};
use keymash_shm::{monotonic_now_ns, remove_segments, Prefix, SegmentId, SegmentName};
use keymash_transport::transport_settings;
use keymash_transport::udp::{PeerSocket, SocketBuffers, RECV_BUFFER_LEN};
use keymash_transport::Receiver;

use crate::receiver::{free_udp_port, service_binary, CellWatch};
use crate::{unique_name, ChildGuard, NotifySocket};

/// The sender's stages in data-flow order.
pub const SENDER_SERVICES: [&str; 4] = ["capture", "delay-buffer", "encoder", "net-tx"];

/// The four sender services with a private configuration; everything is removed on drop.
#[derive(Debug)]
pub struct SenderPipeline {
    pub dir: PathBuf,
    pub prefix: String,
    pub config_path: PathBuf,
    pub config: Config,
    pub video_port: u16,
    pub sender_port: u16,
    /// Each running service with the notify socket it reports to (READY, WATCHDOG).
    children: BTreeMap<&'static str, (ChildGuard, NotifySocket)>,
}

impl SenderPipeline {
    /// A pipeline of `width` x `height` at `fps` with `delay_seconds` of delay and the
    /// synthetic source; `extra` is appended to the configuration file (more sections).
    pub fn new(
        tag: &str,
        width: u32,
        height: u32,
        fps: u32,
        delay_seconds: f64,
        extra: &str,
    ) -> SenderPipeline {
        let name = unique_name(tag);
        let dir = std::env::temp_dir().join(format!("keymash-{name}"));
        std::fs::create_dir_all(&dir).expect("test directory");
        let prefix = format!("kmt{}", name.replace('-', ""));
        let (video_port, sender_port) = (free_udp_port(), free_udp_port());
        let (_key, security) = crate::receiver::write_test_key(&dir);
        let text = format!(
            "[shm]\nprefix = \"{prefix}\"\n\
             [video]\nwidth = {width}\nheight = {height}\nfps = {fps}\n\
             [capture]\nsource = \"synthetic\"\n\
             [delay]\nseconds = {delay_seconds:?}\n\
             [network]\nsender_address = \"127.0.0.1\"\nreceiver_address = \"127.0.0.1\"\n\
             sender_port = {sender_port}\nvideo_port = {video_port}\n{security}{extra}"
        );
        let config = Config::from_toml_str(&text).expect("test configuration parses");
        let config_path = dir.join("keymash.toml");
        std::fs::write(&config_path, text).expect("write the test configuration");
        SenderPipeline {
            dir,
            prefix,
            config_path,
            config,
            video_port,
            sender_port,
            children: BTreeMap::new(),
        }
    }

    pub fn frame_interval(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.config.video.fps))
    }

    pub fn geometry(&self) -> FrameGeometry {
        FrameGeometry::new(
            self.config.video.width as usize,
            self.config.video.height as usize,
        )
        .expect("geometry")
    }

    /// Starts (or restarts, as systemd would) `service`, logging to `<dir>/<service>.log`, and
    /// waits for its READY=1. Returns when it said so (CLOCK_MONOTONIC nanoseconds), so a test
    /// can tell the time the service was down from the time a loaded machine took to start it.
    pub fn start(&mut self, service: &'static str) -> u64 {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{service}.log")))
            .expect("service log file");
        let binary = service_binary(&format!("keymash-{service}"));
        let notify = NotifySocket::bind().expect("bind a notify socket");
        let (key, path) = notify.env();
        let mut child = ChildGuard::spawn(
            service,
            Command::new(binary)
                .arg("--config")
                .arg(&self.config_path)
                .env(key, path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        )
        .expect("start the service");
        if let Err(e) = notify.wait_ready(Duration::from_secs(20)) {
            let status = child.try_wait();
            panic!(
                "{service} did not become ready ({e}, exit: {status:?}); its log:\n{}",
                self.log(service)
            );
        }
        let ready_ns = monotonic_now_ns();
        self.children.insert(service, (child, notify));
        ready_ns
    }

    pub fn start_all(&mut self) {
        for service in SENDER_SERVICES {
            self.start(service);
        }
    }

    /// SIGKILL: a crash, as far as the service can tell.
    pub fn kill_hard(&mut self, service: &'static str) {
        if let Some((mut child, _notify)) = self.children.remove(service) {
            child.kill_hard().expect("kill -9");
        }
    }

    /// Whether every started service is still running.
    pub fn all_running(&mut self) -> bool {
        self.children
            .values_mut()
            .all(|(c, _)| matches!(c.try_wait(), Ok(None)))
    }

    /// The service's log so far (for assertion messages).
    pub fn log(&self, service: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{service}.log"))).unwrap_or_default()
    }
}

impl Drop for SenderPipeline {
    fn drop(&mut self) {
        self.children.clear();
        if let Ok(prefix) = Prefix::new(&self.prefix) {
            let _ = remove_segments(&prefix);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One frame as the test receiver saw it.
#[derive(Debug, Clone)]
pub struct ReceivedFrame {
    /// The codec frame number (the delayed ring's sequence: never goes back).
    pub frame_no: u64,
    /// CLOCK_MONOTONIC nanoseconds when its first packet arrived.
    pub first_arrival_ns: u64,
    /// CLOCK_MONOTONIC nanoseconds when its last packet arrived.
    pub arrival_ns: u64,
    pub payloads: usize,
    /// How many payloads the frame was sent as (from their headers).
    pub payload_count: usize,
    pub bytes: usize,
    /// The quality the encoder coded it at (from its first macroblock), if readable.
    pub quality: Option<u8>,
    /// The 90 kHz RTP timestamp: net-tx derives it from the frame's capture time, so the
    /// difference between two frames' timestamps is the difference between their capture times.
    pub rtp_timestamp: u32,
    /// The stamp read from the decoded picture (`None` for the countdown card, and for pictures
    /// coded too coarsely to read it, below about quality 30).
    pub stamp: Option<Stamp>,
    /// The RTP stream (SSRC) it came in: a restarted net-tx sends a new one.
    pub ssrc: u32,
}

impl ReceivedFrame {
    /// Whether every payload of the frame arrived: a frame that is not whole is torn (only part
    /// of the picture refreshed).
    pub fn is_whole(&self) -> bool {
        self.payloads == self.payload_count
    }

    /// Milliseconds from capture (by the stamp) to arrival.
    pub fn age_ms(&self) -> Option<i64> {
        self.stamp.map(|s| s.age_ms(self.arrival_ns))
    }
}

/// A receiver of the sender's stream on loopback: keymash-transport's Receiver (which sends
/// RTCP feedback back) and keymash-codec's Decoder.
#[derive(Debug)]
pub struct TestReceiver {
    socket: PeerSocket,
    receiver: Receiver,
    decoder: Decoder,
    /// Starts on a whole frame when the sender's stream starts (or starts over), as net-rx does.
    join: FrameJoin,
    current: Option<FrameInProgress>,
    pub frames: Vec<ReceivedFrame>,
}

/// The frame whose payloads are arriving.
#[derive(Debug)]
struct FrameInProgress {
    frame_no: u64,
    first_arrival_ns: u64,
    payloads: usize,
    payload_count: usize,
    bytes: usize,
    quality: Option<u8>,
    rtp_timestamp: u32,
    ssrc: u32,
}

impl TestReceiver {
    pub fn new(pipeline: &SenderPipeline) -> TestReceiver {
        let settings = transport_settings(&pipeline.config).expect("transport settings");
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, pipeline.video_port));
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, pipeline.sender_port));
        let socket = PeerSocket::bind(local, peer, SocketBuffers::default())
            .expect("bind the test receiver");
        // A seed (and so a session salt) of its own per receiver, as net-rx draws one per start.
        let seed = keymash_service::random::bytes::<8>()
            .map(u64::from_le_bytes)
            .expect("random seed");
        let receiver = Receiver::new(settings, seed, Instant::now()).expect("receiver");
        TestReceiver {
            socket,
            receiver,
            decoder: Decoder::new(pipeline.geometry()),
            join: FrameJoin::new(),
            current: None,
            frames: Vec::new(),
        }
    }

    /// Ask the sender for `quality` from now on (in the periodic feedback), and at once with a
    /// feedback packet (sealed as every packet is). Returns when that packet left.
    pub fn request_quality(&mut self, quality: Quality) -> Instant {
        self.receiver.set_feedback(quality, MashLevel::IDLE);
        let now = Instant::now();
        self.receiver.feedback_now(now);
        while let Some(transmit) = self.receiver.poll_transmit(now) {
            self.socket.send(&transmit).expect("send feedback");
        }
        Instant::now()
    }

    /// Receives for `duration`, collecting complete frames; sends feedback as it goes.
    pub fn run_for(&mut self, duration: Duration) {
        let end = Instant::now() + duration;
        let mut buf = vec![0u8; RECV_BUFFER_LEN];
        while Instant::now() < end {
            let wait = Duration::from_millis(2);
            if let Ok(Some(len)) = self.socket.recv(&mut buf, wait) {
                self.receiver.handle_datagram(Instant::now(), &buf[..len]);
            }
            let now = Instant::now();
            self.receiver.handle_timeout(now);
            while let Some(payload) = self.receiver.poll_payload(now) {
                self.take_payload(
                    payload.ssrc.0,
                    payload.rtp_timestamp,
                    &payload.payload,
                    payload.marker,
                );
            }
            while let Some(transmit) = self.receiver.poll_transmit(now) {
                let _ = self.socket.send(&transmit);
            }
        }
    }

    /// Receives until `count` more frames have arrived; fails the test, saying so, if they have
    /// not within `timeout`.
    pub fn run_until_frames(&mut self, count: usize, timeout: Duration) {
        let start = self.frames.len();
        let end = Instant::now() + timeout;
        while self.frames.len() < start + count {
            assert!(
                Instant::now() < end,
                "waited {timeout:?} for {count} frames from the sender, {} arrived",
                self.frames.len() - start
            );
            self.run_for(Duration::from_millis(10));
        }
    }

    fn take_payload(&mut self, ssrc: u32, rtp_timestamp: u32, payload: &[u8], marker: bool) {
        let Ok(header) = PayloadHeader::parse(payload) else {
            return;
        };
        if !self.join.admit(u64::from(ssrc), &header) {
            return;
        }
        let frame_no = header.frame_no.0;
        if self
            .current
            .as_ref()
            .is_some_and(|f| f.frame_no != frame_no)
        {
            self.finish_frame();
        }
        if self.decoder.apply(payload).is_err() {
            return;
        }
        let frame = self.current.get_or_insert(FrameInProgress {
            frame_no,
            first_arrival_ns: monotonic_now_ns(),
            payloads: 0,
            payload_count: usize::from(header.payload_count),
            bytes: 0,
            quality: first_macroblock_quality(payload),
            rtp_timestamp,
            ssrc,
        });
        frame.payloads += 1;
        frame.bytes += payload.len();
        if marker {
            self.finish_frame();
        }
    }

    fn finish_frame(&mut self) {
        if let Some(f) = self.current.take() {
            self.frames.push(ReceivedFrame {
                frame_no: f.frame_no,
                first_arrival_ns: f.first_arrival_ns,
                arrival_ns: monotonic_now_ns(),
                payloads: f.payloads,
                payload_count: f.payload_count,
                bytes: f.bytes,
                quality: f.quality,
                rtp_timestamp: f.rtp_timestamp,
                ssrc: f.ssrc,
                stamp: read_stamp(self.decoder.frame()),
            });
        }
    }
}

/// The quality of a payload's first macroblock, which always states it explicitly: after the
/// 24-byte header, bit '0' then 7 bits of (quality - 1), MSB first (see `keymash_codec::block`).
pub fn first_macroblock_quality(payload: &[u8]) -> Option<u8> {
    let byte = *payload.get(keymash_codec::payload::HEADER_LEN)?;
    (byte & 0x80 == 0).then_some((byte & 0x7f) + 1)
}

/// The capture time of each of `frames` (CLOCK_MONOTONIC, fractional milliseconds), from its
/// RTP timestamp, anchored on the frames whose stamp could be read; `None` without any stamp.
/// Good to a millisecond (the stamp's resolution); `frames` must come from one sender stream.
pub fn capture_times_ms(frames: &[ReceivedFrame]) -> Option<Vec<f64>> {
    let reference = frames.first()?.rtp_timestamp;
    let since_reference_ms =
        |f: &ReceivedFrame| f64::from(f.rtp_timestamp.wrapping_sub(reference) as i32) / 90.0;
    // A stamp holds the capture time rounded down to the millisecond, so each stamped frame
    // gives the offset up to one millisecond too low: the largest is the best.
    let now_ns = monotonic_now_ns();
    let now_ms = (now_ns / 1_000_000) as f64;
    let offset = frames
        .iter()
        .filter_map(|f| {
            f.stamp
                .map(|s| now_ms - s.age_ms(now_ns) as f64 - since_reference_ms(f))
        })
        .max_by(f64::total_cmp)?;
    Some(
        frames
            .iter()
            .map(|f| offset + since_reference_ms(f))
            .collect(),
    )
}

/// One store net-tx made to the quality cell, as a watcher saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualityStore {
    /// The cell's version after the store (stores so far).
    pub version: u64,
    pub quality: Option<u8>,
    pub from_receiver: bool,
    /// net-tx's own CLOCK_MONOTONIC time of the store, in the record.
    pub updated_ns: u64,
}

/// Every store to the pipeline's quality cell (net-tx writes it, the encoder reads it before
/// each frame), logged by a thread until dropped; see [`CellWatch`].
#[derive(Debug)]
pub struct QualityCellWatch(CellWatch<QualityRecord>);

impl QualityCellWatch {
    pub fn start(pipeline: &SenderPipeline) -> QualityCellWatch {
        let prefix = Prefix::new(&pipeline.prefix).expect("prefix");
        QualityCellWatch(CellWatch::start(SegmentId::new(
            prefix,
            SegmentName::new(QUALITY_CELL).expect("name"),
        )))
    }

    /// Every store seen so far, oldest first.
    pub fn stores(&self) -> Vec<QualityStore> {
        self.0
            .stores()
            .into_iter()
            .map(|(version, record)| QualityStore {
                version,
                quality: record.quality().map(Quality::get),
                from_receiver: record.from_receiver(),
                updated_ns: record.updated_ns(),
            })
            .collect()
    }
}
