//! Support for the sender's integration tests (`tests/tests/sender_*.rs`): the four sender
//! services as real processes with a private configuration (shm prefix, loopback ports), killed
//! and their segments removed on drop, and a test receiver of their UDP stream that decodes the
//! pictures and reads the stamp back from the pixels.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keymash_codec::{Decoder, FrameGeometry, PayloadHeader};
use keymash_core::config::Config;
use keymash_core::{MashLevel, Quality};
use keymash_media::{read_stamp, transport_settings, Stamp};
use keymash_shm::{monotonic_now_ns, remove_segments, Prefix};
use keymash_transport::rtcp::app::{self, KeymashApp};
use keymash_transport::udp::{PeerSocket, SocketBuffers, RECV_BUFFER_LEN};
use keymash_transport::{Receiver, Ssrc};

use crate::receiver::{free_udp_port, service_binary};
use crate::{unique_name, ChildGuard};

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
    children: BTreeMap<&'static str, ChildGuard>,
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
        let text = format!(
            "[shm]\nprefix = \"{prefix}\"\n\
             [video]\nwidth = {width}\nheight = {height}\nfps = {fps}\n\
             [capture]\nsource = \"synthetic\"\n\
             [delay]\nseconds = {delay_seconds:?}\n\
             [network]\nsender_address = \"127.0.0.1\"\nreceiver_address = \"127.0.0.1\"\n\
             sender_port = {sender_port}\nvideo_port = {video_port}\n{extra}"
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

    /// Starts (or restarts, as systemd would) `service`, logging to `<dir>/<service>.log`.
    pub fn start(&mut self, service: &'static str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{service}.log")))
            .expect("service log file");
        let binary = service_binary(&format!("keymash-{service}"));
        let child = ChildGuard::spawn(
            service,
            Command::new(binary)
                .arg("--config")
                .arg(&self.config_path)
                .env_remove("NOTIFY_SOCKET")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        )
        .expect("start the service");
        self.children.insert(service, child);
    }

    pub fn start_all(&mut self) {
        for service in SENDER_SERVICES {
            self.start(service);
        }
    }

    /// SIGKILL: a crash, as far as the service can tell.
    pub fn kill_hard(&mut self, service: &'static str) {
        if let Some(mut child) = self.children.remove(service) {
            child.kill_hard().expect("kill -9");
        }
    }

    /// Whether every started service is still running.
    pub fn all_running(&mut self) -> bool {
        self.children
            .values_mut()
            .all(|c| matches!(c.try_wait(), Ok(None)))
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
    /// CLOCK_MONOTONIC nanoseconds when its last packet arrived.
    pub arrival_ns: u64,
    pub payloads: usize,
    pub bytes: usize,
    /// The stamp read from the decoded picture (`None` for the countdown card).
    pub stamp: Option<Stamp>,
}

impl ReceivedFrame {
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
    current: Option<(u64, usize, usize)>,
    pub frames: Vec<ReceivedFrame>,
}

impl TestReceiver {
    pub fn new(pipeline: &SenderPipeline) -> TestReceiver {
        let settings = transport_settings(&pipeline.config).expect("transport settings");
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, pipeline.video_port));
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, pipeline.sender_port));
        let socket = PeerSocket::bind(local, peer, SocketBuffers::default())
            .expect("bind the test receiver");
        let receiver = Receiver::new(settings, 7, Instant::now()).expect("receiver");
        TestReceiver {
            socket,
            receiver,
            decoder: Decoder::new(pipeline.geometry()),
            current: None,
            frames: Vec::new(),
        }
    }

    /// Ask the sender for `quality` from now on (in the periodic feedback), and at once with an
    /// RTCP APP packet of our own. Returns when that packet left.
    pub fn request_quality(&mut self, quality: Quality) -> Instant {
        self.receiver.set_feedback(quality, MashLevel::IDLE);
        let mut packet = Vec::new();
        app::write(
            Ssrc(0x7E57),
            &KeymashApp {
                quality,
                mash: MashLevel::IDLE,
            },
            &mut packet,
        )
        .expect("APP packet");
        let transmit = keymash_transport::Transmit {
            contents: packet,
            kind: keymash_transport::TransmitKind::Rtcp,
        };
        self.socket.send(&transmit).expect("send APP");
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
                self.take_payload(&payload.payload, payload.marker);
            }
            while let Some(transmit) = self.receiver.poll_transmit(now) {
                let _ = self.socket.send(&transmit);
            }
        }
    }

    /// Receives until `count` more frames have arrived or `timeout` passes.
    pub fn run_until_frames(&mut self, count: usize, timeout: Duration) {
        let target = self.frames.len() + count;
        let end = Instant::now() + timeout;
        while self.frames.len() < target && Instant::now() < end {
            self.run_for(Duration::from_millis(10));
        }
    }

    fn take_payload(&mut self, payload: &[u8], marker: bool) {
        let Ok(header) = PayloadHeader::parse(payload) else {
            return;
        };
        let frame_no = header.frame_no.0;
        if self.current.is_some_and(|(f, _, _)| f != frame_no) {
            self.finish_frame();
        }
        if self.decoder.apply(payload).is_err() {
            return;
        }
        let (f, count, bytes) = self.current.get_or_insert((frame_no, 0, 0));
        debug_assert_eq!(*f, frame_no);
        *count += 1;
        *bytes += payload.len();
        if marker {
            self.finish_frame();
        }
    }

    fn finish_frame(&mut self) {
        if let Some((frame_no, payloads, bytes)) = self.current.take() {
            self.frames.push(ReceivedFrame {
                frame_no,
                arrival_ns: monotonic_now_ns(),
                payloads,
                bytes,
                stamp: read_stamp(self.decoder.frame()),
            });
        }
    }
}
