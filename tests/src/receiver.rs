//! Support for the receiver's integration tests (`tests/tests/receiver_*.rs`): starting the
//! receiver services with a private configuration, a test sender that streams codec payloads
//! over real UDP (and can drop chosen payloads on purpose), test pictures, and readers for the
//! mash cell and the display's Y4M output.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keymash_codec::{
    Encoder, EncoderConfig, FrameGeometry, I420Frame, PayloadHeader, PayloadSink, QualitySpec,
};
use keymash_core::{FrameNo, Quality};
use keymash_pipeline::{MashRecord, MASH_CELL};
use keymash_shm::{CellReader, Prefix, SegmentId, SegmentName};
use keymash_transport::rtp::RtpPacket;
use keymash_transport::udp::{PeerSocket, SocketBuffers, RECV_BUFFER_LEN};
use keymash_transport::{Protection, Sender, TransmitKind, TransportConfig};

use crate::{unique_name, ChildGuard, Netns, NetnsPair, NotifySocket};

pub use crate::service_binary;

/// A service started by [`ReceiverSetup::start`]: the process (killed on drop) and the notify
/// socket it keeps talking to (WATCHDOG, STATUS) for as long as it runs.
#[derive(Debug)]
pub struct RunningService {
    pub child: ChildGuard,
    _notify: NotifySocket,
}

impl std::ops::Deref for RunningService {
    type Target = ChildGuard;
    fn deref(&self) -> &ChildGuard {
        &self.child
    }
}

impl std::ops::DerefMut for RunningService {
    fn deref_mut(&mut self) -> &mut ChildGuard {
        &mut self.child
    }
}

/// A UDP port free right now on loopback (the kernel picks it; the socket is closed again).
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
    socket.local_addr().expect("local address").port()
}

/// A private receiver setup: its own directory, shm prefix and ports, removed on drop.
#[derive(Debug)]
pub struct ReceiverSetup {
    pub dir: PathBuf,
    pub prefix: String,
    pub config: PathBuf,
    pub sender_port: u16,
    pub video_port: u16,
    /// The pre-shared key in `dir/keymash.key` that the configuration names: the link is
    /// protected in these tests as on the exhibit.
    pub key: keymash_core::key::PreSharedKey,
    pub geometry: FrameGeometry,
}

/// A new random pre-shared key written to `dir/keymash.key`, and the `[security]` section that
/// names it.
pub fn write_test_key(dir: &Path) -> (keymash_core::key::PreSharedKey, String) {
    let key = keymash_core::key::PreSharedKey::from_bytes(
        keymash_service::random::bytes().expect("random key"),
    );
    let path = dir.join("keymash.key");
    std::fs::write(&path, key.to_file_text()).expect("write the key file");
    (
        key,
        format!("[security]\nkey_file = \"{}\"\n", path.display()),
    )
}

impl ReceiverSetup {
    /// Writes a configuration for a 320x240 30 fps stream on loopback with the given extra TOML
    /// (sections such as `[display]`, `[input]`); `{dir}` in it is replaced by the directory.
    pub fn new(tag: &str, extra: &str) -> ReceiverSetup {
        Self::with_network(tag, "127.0.0.1", "127.0.0.1", (320, 240), extra)
    }

    /// [`ReceiverSetup::new`] for a `width` x `height` stream (benches measure the exhibit's
    /// 640x480).
    pub fn sized(tag: &str, width: u32, height: u32, extra: &str) -> ReceiverSetup {
        Self::with_network(tag, "127.0.0.1", "127.0.0.1", (width, height), extra)
    }

    /// The two PCs of a [`NetnsPair`]: the sender in `left`, the receiver in `right`, the loss
    /// filter on the receiver's veth end; the synthetic camera with no delay.
    pub fn two_pcs(tag: &str, extra: &str) -> ReceiverSetup {
        let extra = format!(
            "[capture]\nsource = \"synthetic\"\n[delay]\nseconds = 0.0\n[loss]\ninterface = \"{}\"\n{extra}",
            NetnsPair::RIGHT_INTERFACE
        );
        Self::with_network(
            tag,
            &NetnsPair::LEFT_V4.to_string(),
            &NetnsPair::RIGHT_V4.to_string(),
            (320, 240),
            &extra,
        )
    }

    fn with_network(
        tag: &str,
        sender_address: &str,
        receiver_address: &str,
        (width, height): (u32, u32),
        extra: &str,
    ) -> ReceiverSetup {
        let name = unique_name(tag);
        let dir = std::env::temp_dir().join(format!("keymash-{name}"));
        std::fs::create_dir_all(&dir).expect("test directory");
        let prefix = format!(
            "kmt{}",
            name.replace('-', "")
                .chars()
                .rev()
                .take(20)
                .collect::<String>()
        );
        let (sender_port, video_port) = (free_udp_port(), free_udp_port());
        let (key, security) = write_test_key(&dir);
        let text = format!(
            "[shm]\nprefix = \"{prefix}\"\n[video]\nwidth = {width}\nheight = {height}\nfps = 30\n\
             [network]\nsender_address = \"{sender_address}\"\nsender_port = {sender_port}\n\
             receiver_address = \"{receiver_address}\"\nvideo_port = {video_port}\n{security}{}",
            extra.replace("{dir}", &dir.display().to_string())
        );
        let config = dir.join("keymash.toml");
        std::fs::write(&config, text).expect("write the configuration");
        ReceiverSetup {
            dir,
            prefix,
            config,
            sender_port,
            video_port,
            key,
            geometry: FrameGeometry::new(width as usize, height as usize).expect("test geometry"),
        }
    }

    pub fn geometry(&self) -> FrameGeometry {
        self.geometry
    }

    /// Starts `binary` with this configuration and waits for its READY=1.
    pub fn start(&self, binary: &str) -> RunningService {
        self.start_with_env(binary, &[])
    }

    /// [`ReceiverSetup::start`] with extra environment variables (`DISPLAY`, `SDL_VIDEODRIVER`).
    pub fn start_with_env(&self, binary: &str, env: &[(&str, &str)]) -> RunningService {
        self.start_command(binary, Command::new(service_binary(binary)), env)
    }

    /// [`ReceiverSetup::start`] inside a network namespace, with extra arguments.
    pub fn start_in(&self, netns: &Netns, binary: &str, args: &[&str]) -> RunningService {
        let mut command = netns.command(service_binary(binary));
        command.args(args);
        self.start_command(binary, command, &[])
    }

    /// The whole installation on a [`NetnsPair`] made for [`ReceiverSetup::two_pcs`]: the
    /// receiver's four services in `right` (the loss filter on its veth end), then the
    /// sender's four in `left`. Each stops when its guard is dropped.
    pub fn start_installation(&self, pair: &NetnsPair) -> Vec<RunningService> {
        let receiver = [
            "keymash-mash-input",
            "keymash-loss-controller",
            "keymash-net-rx",
            "keymash-display",
        ]
        .map(|name| self.start_in(&pair.right, name, &[]));
        let sender = [
            "keymash-capture",
            "keymash-delay-buffer",
            "keymash-encoder",
            "keymash-net-tx",
        ]
        .map(|name| self.start_in(&pair.left, name, &[]));
        receiver.into_iter().chain(sender).collect()
    }

    /// [`ReceiverSetup::start`] of a command the test prepared (wrapped in `setpriv` to run as
    /// another user, its stderr sent to a file); `any_user` lets a process of any user send to
    /// the notify socket.
    pub fn start_prepared(&self, binary: &str, command: Command, any_user: bool) -> RunningService {
        self.start_command_as(binary, command, &[], any_user)
    }

    fn start_command(
        &self,
        binary: &str,
        command: Command,
        env: &[(&str, &str)],
    ) -> RunningService {
        self.start_command_as(binary, command, env, false)
    }

    fn start_command_as(
        &self,
        binary: &str,
        mut command: Command,
        env: &[(&str, &str)],
        any_user: bool,
    ) -> RunningService {
        let notify = NotifySocket::bind().expect("bind a notify socket");
        if any_user {
            notify
                .allow_any_user()
                .expect("open the notify socket to any user");
        }
        let (key, path) = notify.env();
        command
            .arg("--config")
            .arg(&self.config)
            .env(key, path)
            .stdin(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = ChildGuard::spawn(binary, &mut command).expect("start the service");
        if let Err(e) = notify.wait_ready(Duration::from_secs(10)) {
            let status = child.try_wait();
            panic!("{binary} did not become ready ({e}, exit: {status:?})");
        }
        RunningService {
            child,
            _notify: notify,
        }
    }

    pub fn segment(&self, name: &str) -> SegmentId {
        SegmentId::new(
            Prefix::new(&self.prefix).expect("prefix"),
            SegmentName::new(name).expect("name"),
        )
    }

    /// Gauge `name` of `service`'s statistics cell, if published.
    pub fn gauge(&self, service: keymash_pipeline::Service, name: &str) -> Option<f64> {
        CellReader::<keymash_shm::ServiceStats>::open(&self.segment(&service.stats_cell()))
            .ok()?
            .load()
            .ok()?
            .gauge(name)
    }

    /// Counter `name` of `service`'s statistics cell, if published.
    pub fn counter(&self, service: keymash_pipeline::Service, name: &str) -> Option<u64> {
        CellReader::<keymash_shm::ServiceStats>::open(&self.segment(&service.stats_cell()))
            .ok()?
            .load()
            .ok()?
            .counter(name)
    }

    /// The mash cell's current value, if mash-input has published one.
    pub fn mash(&self) -> Option<MashRecord> {
        CellReader::<MashRecord>::open(&self.segment(MASH_CELL))
            .ok()?
            .load()
            .ok()
    }

    /// A test sender bound to this setup's sender port, streaming to its video port.
    pub fn sender(&self) -> TestSender {
        TestSender::new(
            self.sender_port,
            self.video_port,
            self.geometry(),
            Protection::PreShared(self.key.clone()),
        )
    }
}

impl Drop for ReceiverSetup {
    fn drop(&mut self) {
        if let Ok(prefix) = Prefix::new(&self.prefix) {
            let _ = keymash_shm::remove_segments(&prefix);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A test picture that differs in every macroblock from one frame to the next: a gradient with
/// a per-macroblock level that moves with the frame number, and a coloured chroma ramp.
pub fn test_picture(geometry: FrameGeometry, frame: u64) -> I420Frame {
    let (w, h) = (geometry.width(), geometry.height());
    let mut y = vec![0u8; w * h];
    for row in 0..h {
        for col in 0..w {
            let mb = (row / 16) * geometry.mb_cols() + col / 16;
            let level = ((mb as u64 * 37 + frame * 53) % 160) as usize + 40;
            y[row * w + col] = (level + (col % 16) + (row % 16)) as u8;
        }
    }
    let (cw, ch) = (geometry.chroma_width(), geometry.chroma_height());
    let u = (0..cw * ch)
        .map(|i| (96 + (i % cw) * 64 / cw + frame as usize % 16) as u8)
        .collect();
    let v = (0..cw * ch)
        .map(|i| (160 - (i / cw) * 64 / ch) as u8)
        .collect();
    I420Frame::from_planes(geometry, y, u, v).expect("test picture planes")
}

/// One frame as the test sender sent it.
#[derive(Debug, Clone)]
pub struct SentFrame {
    pub frame: FrameNo,
    pub payloads: Vec<Vec<u8>>,
    /// Indexes of payloads deliberately not sent.
    pub dropped: Vec<u16>,
    pub bytes: usize,
    pub quality: Quality,
    /// Wall-clock time the frame was encoded (file times of the display's output compare to it).
    pub encoded_at: std::time::SystemTime,
}

impl SentFrame {
    /// The payloads that went out, in order.
    pub fn delivered(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.payloads.iter().filter(|p| {
            PayloadHeader::parse(p).is_ok_and(|h| !self.dropped.contains(&h.payload_index))
        })
    }
}

/// A sender PC in miniature: codec encoder plus transport sender on a real UDP socket.
#[derive(Debug)]
pub struct TestSender {
    socket: PeerSocket,
    sender: Sender,
    encoder: Encoder,
    geometry: FrameGeometry,
    next_frame: u64,
    interval: Duration,
    buf: Vec<u8>,
}

impl TestSender {
    pub fn new(
        local_port: u16,
        receiver_port: u16,
        geometry: FrameGeometry,
        security: Protection,
    ) -> TestSender {
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, local_port));
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, receiver_port));
        let socket =
            PeerSocket::bind(local, peer, SocketBuffers::default()).expect("bind the test sender");
        // A different seed per sender, as net-tx draws one per start.
        let seed = keymash_service::random::bytes::<8>()
            .map(u64::from_le_bytes)
            .expect("random seed");
        let sender = Sender::new(
            TransportConfig {
                security,
                ..TransportConfig::default()
            },
            seed,
            Instant::now(),
        )
        .expect("transport sender");
        let encoder = Encoder::new(EncoderConfig::new(geometry)).expect("encoder");
        let interval = TransportConfig::default().frame_interval;
        TestSender {
            socket,
            sender,
            encoder,
            geometry,
            next_frame: 1,
            interval,
            buf: vec![0; RECV_BUFFER_LEN],
        }
    }

    pub fn geometry(&self) -> FrameGeometry {
        self.geometry
    }

    /// The quality net-rx's feedback asks for (the transport's fallback while there is none).
    pub fn requested_quality(&self) -> Quality {
        self.sender.requested_quality(Instant::now())
    }

    /// Encodes `picture` at `quality`, sends it paced over the next frame interval while taking
    /// in feedback, and leaves out the payloads `drop(payload_index)` picks.
    pub fn send_frame(
        &mut self,
        picture: &I420Frame,
        quality: Quality,
        drop: impl Fn(u16) -> bool,
    ) -> SentFrame {
        let frame = FrameNo(self.next_frame);
        self.next_frame += 1;
        let encoded_at = std::time::SystemTime::now();
        let mut sink = PayloadSink::new();
        self.encoder
            .encode(
                frame,
                picture.view(),
                QualitySpec::Uniform(quality),
                &mut sink,
            )
            .expect("encode");
        let payloads: Vec<Vec<u8>> = sink.iter().map(<[u8]>::to_vec).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let start = Instant::now();
        let queued = self
            .sender
            .push_frame(start, frame, start, &refs)
            .expect("queue the frame");
        // Payload i went out as RTP sequence number last - (count - 1 - i): told from the
        // header, which stays in the clear when the payload is sealed.
        let first_seq = queued
            .last_seq
            .wire()
            .wrapping_sub(refs.len().saturating_sub(1) as u16);
        let mut dropped = Vec::new();
        self.pump_until(start + self.interval, |contents| {
            let index = RtpPacket::parse(contents)
                .ok()
                .map(|p| p.seq.wrapping_sub(first_seq))
                .filter(|&i| usize::from(i) < refs.len());
            match index {
                Some(i) if drop(i) => {
                    dropped.push(i);
                    false
                }
                _ => true,
            }
        });
        SentFrame {
            frame,
            bytes: payloads.iter().map(Vec::len).sum(),
            payloads,
            dropped,
            quality,
            encoded_at,
        }
    }

    /// Sends what is due and takes in feedback until `deadline`; `keep_media` may veto media.
    fn pump_until(&mut self, deadline: Instant, mut keep_media: impl FnMut(&[u8]) -> bool) {
        loop {
            let now = Instant::now();
            while let Some(t) = self.sender.poll_transmit(now) {
                if t.kind == TransmitKind::Media && !keep_media(&t.contents) {
                    continue;
                }
                // The receiver may be restarting (ICMP unreachable): that is what the test is about.
                let _ = self.socket.send(&t);
            }
            if now >= deadline {
                return;
            }
            let wake = self
                .sender
                .poll_timeout()
                .map_or(deadline, |t| t.min(deadline));
            let wait = wake
                .saturating_duration_since(Instant::now())
                .max(Duration::from_micros(200));
            if let Ok(Some(len)) = self.socket.recv(&mut self.buf, wait) {
                self.sender
                    .handle_datagram(Instant::now(), &self.buf[..len]);
            }
        }
    }

    /// Streams test pictures for `duration`, each at the quality the receiver asks for (as the
    /// real encoder does), and returns what was sent.
    pub fn stream_at_requested_quality(&mut self, duration: Duration) -> Vec<SentFrame> {
        let until = Instant::now() + duration;
        let mut sent = Vec::new();
        while Instant::now() < until {
            let picture = test_picture(self.geometry, self.next_frame);
            let quality = self.requested_quality();
            sent.push(self.send_frame(&picture, quality, |_| false));
        }
        sent
    }

    /// Keeps the stream's control traffic going without media for `duration`.
    pub fn idle(&mut self, duration: Duration) {
        self.pump_until(Instant::now() + duration, |_| true);
    }

    /// Keeps the control traffic going without media until net-rx's feedback asks for
    /// `quality`; how long that took (checked after every datagram), or `None` after `timeout`.
    pub fn idle_until_quality(&mut self, quality: Quality, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        let deadline = start + timeout;
        while Instant::now() < deadline {
            if self.requested_quality() == quality {
                return Some(start.elapsed());
            }
            let now = Instant::now();
            while let Some(t) = self.sender.poll_transmit(now) {
                let _ = self.socket.send(&t);
            }
            let wait = self
                .sender
                .poll_timeout()
                .map_or(deadline, |t| t.min(deadline))
                .saturating_duration_since(Instant::now())
                .max(Duration::from_micros(200));
            if let Ok(Some(len)) = self.socket.recv(&mut self.buf, wait) {
                self.sender
                    .handle_datagram(Instant::now(), &self.buf[..len]);
            }
        }
        (self.requested_quality() == quality).then(|| start.elapsed())
    }
}

/// Pictures of a Y4M stream written by the display, with the frame number each is tagged with.
/// Cards (the signal-lost card, tagged with the last frame shown before it) are left out: they
/// are not that frame; [`read_y4m_pictures`] has them.
pub fn read_tagged_y4m(path: &Path) -> Vec<(FrameNo, I420Frame)> {
    read_y4m_pictures(path)
        .into_iter()
        .filter(|p| p.card.is_none())
        .map(|p| (p.frame, p.picture))
        .collect()
}

/// One picture of the display's Y4M stream.
#[derive(Debug, Clone)]
pub struct Y4mPicture {
    /// The frame it shows, or for a card the last frame shown before it.
    pub frame: FrameNo,
    /// The card's name (`signal-lost`) if the picture is a card.
    pub card: Option<String>,
    /// The whole headless canvas.
    pub picture: I420Frame,
    /// The file's length once this picture was written whole (to tell when it appeared).
    pub end: u64,
}

/// Every complete picture of a Y4M stream written by the display, cards included.
pub fn read_y4m_pictures(path: &Path) -> Vec<Y4mPicture> {
    let bytes = std::fs::read(path).expect("read the Y4M output");
    let header_end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .expect("Y4M header line");
    let header = String::from_utf8_lossy(&bytes[..header_end]).into_owned();
    let param = |p: char| -> usize {
        header
            .split_whitespace()
            .find_map(|f| f.strip_prefix(p))
            .and_then(|v| v.parse().ok())
            .expect("W and H")
    };
    let geometry = FrameGeometry::new(param('W'), param('H')).expect("canvas geometry");
    let (luma, chroma) = (geometry.luma_len(), geometry.chroma_len());
    let mut pictures = Vec::new();
    let mut at = header_end + 1;
    while let Some(line_len) = bytes[at..].iter().position(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(&bytes[at..at + line_len]).into_owned();
        let frame = keymash_present::frame_tag(&line).expect("tagged FRAME line");
        let data = at + line_len + 1;
        if bytes.len() < data + luma + 2 * chroma {
            break; // the display is still writing this one
        }
        let plane = |from: usize, len: usize| bytes[from..from + len].to_vec();
        let picture = I420Frame::from_planes(
            geometry,
            plane(data, luma),
            plane(data + luma, chroma),
            plane(data + luma + chroma, chroma),
        )
        .expect("Y4M picture");
        pictures.push(Y4mPicture {
            frame,
            card: keymash_present::is_card(&line).map(str::to_owned),
            picture,
            end: (data + luma + 2 * chroma) as u64,
        });
        at = data + luma + 2 * chroma;
    }
    pictures
}

/// Cuts the picture out of a headless canvas (`border` on every side).
pub fn crop_picture(canvas: &I420Frame, border: usize, geometry: FrameGeometry) -> I420Frame {
    keymash_present::picture_of_headless(canvas, border, geometry)
        .expect("a canvas of this picture's size")
}

/// Raster indexes of the macroblocks in which two pictures differ at all.
pub fn differing_macroblocks(a: &I420Frame, b: &I420Frame) -> Vec<usize> {
    let g = a.geometry();
    (0..g.mb_count())
        .filter(|&mb| {
            let (mx, my) = (mb % g.mb_cols(), mb / g.mb_cols());
            let luma = (0..16).any(|r| {
                let start = (my * 16 + r) * g.width() + mx * 16;
                a.y()[start..start + 16] != b.y()[start..start + 16]
            });
            let chroma = (0..8).any(|r| {
                let start = (my * 8 + r) * g.chroma_width() + mx * 8;
                a.u()[start..start + 8] != b.u()[start..start + 8]
                    || a.v()[start..start + 8] != b.v()[start..start + 8]
            });
            luma || chroma
        })
        .collect()
}

/// Raster indexes of the macroblocks a payload carries.
pub fn payload_macroblocks(payload: &[u8], geometry: FrameGeometry) -> Vec<usize> {
    let h = PayloadHeader::parse(payload).expect("payload header");
    (0..usize::from(h.mb_count))
        .map(|i| h.macroblock_position(i, geometry.mb_count()))
        .collect()
}

/// Letter keys (evdev codes of Q..P, A..L, Z..M): varied mashing.
pub const LETTER_KEYS: [u16; 26] = [
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 30, 31, 32, 33, 34, 35, 36, 37, 38, 44, 45, 46, 47, 48,
    49, 50,
];

/// mash-input's FIFO (`[input] source = "fifo:PATH"`), opened for writing as a keyboard.
///
/// Never blocks for good: opening waits (bounded) for mash-input to open its end, and a write
/// that does not fit because mash-input stopped reading fails the test instead of hanging it.
#[derive(Debug)]
pub struct FifoKeyboard {
    pipe: std::fs::File,
}

impl FifoKeyboard {
    /// Opens `fifo`, waiting up to `timeout` for mash-input to have it open for reading.
    pub fn open(fifo: &Path, timeout: Duration) -> FifoKeyboard {
        use std::os::unix::fs::OpenOptionsExt as _;
        let deadline = Instant::now() + timeout;
        loop {
            // Non-blocking: fails with ENXIO (instead of waiting) while nobody reads the FIFO.
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                .open(fifo)
            {
                Ok(pipe) => return FifoKeyboard { pipe },
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "mash-input did not open its FIFO {} for reading within {timeout:?} ({e})",
                    fifo.display()
                ),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Writes `bytes` (whole `struct input_event` records), waiting up to a second for room.
    pub fn write(&mut self, bytes: &[u8]) {
        use std::io::Write as _;
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut rest = bytes;
        while !rest.is_empty() {
            match self.pipe.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "mash-input stopped reading its FIFO (full for a second)"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => {
                    panic!("writing key events into mash-input's FIFO: {e} (did mash-input die?)")
                }
            }
        }
    }

    /// A press and a release of each of `keys`.
    pub fn press_and_release(&mut self, keys: &[u16]) {
        let bytes: Vec<u8> = keys
            .iter()
            .flat_map(|&k| {
                [
                    keymash_input::InputEvent::key(k, 1).to_bytes(),
                    keymash_input::InputEvent::key(k, 0).to_bytes(),
                ]
            })
            .flatten()
            .collect();
        self.write(&bytes);
    }
}

/// A visitor at the keyboard: a thread that writes a press and a release of varied keys into
/// mash-input's FIFO, `per_second` times a second for `duration`.
pub fn type_into_fifo(
    fifo: PathBuf,
    per_second: u32,
    duration: Duration,
) -> std::thread::JoinHandle<()> {
    type_records_into_fifo(
        fifo,
        keymash_input::event::KEY_PRESSED,
        per_second,
        duration,
    )
}

/// A thread that writes key records of `value` (a press, followed by its release, or another
/// value alone, such as autorepeat) of varied keys into mash-input's FIFO, `per_second` times a
/// second for `duration`.
///
/// Paced by an absolute schedule (the n-th key at `n / per_second` after the start), not by
/// sleeping a fixed time after each key: on a loaded machine every sleep overshoots, and the
/// typist would type slower than asked and the mash level the test expects would not be reached
/// through no fault of the product. A typist woken late writes the keys it owes at once (the
/// mash window, three seconds, counts them all the same).
pub fn type_records_into_fifo(
    fifo: PathBuf,
    value: i32,
    per_second: u32,
    duration: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut keyboard = FifoKeyboard::open(&fifo, Duration::from_secs(10));
        let start = Instant::now();
        let period = Duration::from_secs(1) / per_second.max(1);
        let keys = (duration.as_secs_f64() * f64::from(per_second)).round() as usize;
        for n in 0..keys {
            let due = start + period * n as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let key = LETTER_KEYS[n % LETTER_KEYS.len()];
            let mut bytes = keymash_input::InputEvent::key(key, value)
                .to_bytes()
                .to_vec();
            if value == keymash_input::event::KEY_PRESSED {
                bytes.extend(keymash_input::InputEvent::key(key, 0).to_bytes());
            }
            keyboard.write(&bytes);
        }
        // Hold on to the end of `duration`, as a typist who just stopped would.
        if let Some(wait) = (start + duration).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    })
}

/// A thread that logs every store to a cell of the pipeline (as `(version, value)`), woken by
/// the cell's futex, from the moment the cell exists until the watch is dropped. What a product
/// stage stored, and the time it recorded in the value, are then facts independent of when the
/// test thread happened to look.
#[derive(Debug)]
pub struct CellWatch<T> {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    log: std::sync::Arc<std::sync::Mutex<Vec<(u64, T)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<T: keymash_shm::CellValue + Copy + Send + 'static> CellWatch<T> {
    pub fn start(id: SegmentId) -> CellWatch<T> {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, log) = (stop.clone(), log.clone());
            std::thread::spawn(move || {
                let mut cell = None;
                let mut seen = 0;
                while !stop.load(Ordering::Relaxed) {
                    let Some(reader) = cell.as_ref() else {
                        cell = CellReader::<T>::open(&id).ok();
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    // Short waits: only so that `stop` is noticed.
                    if reader
                        .wait_for_change(seen, Duration::from_millis(20))
                        .is_err()
                    {
                        continue;
                    }
                    if let Ok((value, version)) = reader.load_versioned() {
                        seen = version;
                        if let Ok(mut log) = log.lock() {
                            log.push((version, value));
                        }
                    }
                }
            })
        };
        CellWatch {
            stop,
            log,
            thread: Some(thread),
        }
    }

    /// Every store seen so far, oldest first. A store replaced by the next before the watcher
    /// woke is missing (the versions show the gap).
    pub fn stores(&self) -> Vec<(u64, T)> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl<T> Drop for CellWatch<T> {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The mash level the default mash model (`[mash]` defaults) gives right after
/// [`type_records_into_fifo`] pressed keys `per_second` times a second for `duration`: the same
/// keys at the times it is scheduled to press them.
pub fn typist_level(per_second: u32, duration: Duration) -> f32 {
    let mut meter =
        keymash_core::mash::MashMeter::new(keymash_core::mash::MashModelConfig::default());
    let start = Instant::now();
    let period = Duration::from_secs(1) / per_second.max(1);
    let keys = (duration.as_secs_f64() * f64::from(per_second)).round() as u32;
    for n in 0..keys {
        meter.press(
            LETTER_KEYS[n as usize % LETTER_KEYS.len()],
            start + period * n,
        );
    }
    meter.level(start + period * keys.saturating_sub(1)).get()
}
