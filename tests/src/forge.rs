//! Support for the forgery test (`tests/tests/security_forgery.rs`): a third party on the
//! exhibit's network that sees every frame and sends datagrams with any source address.
//!
//! - [`Lan`]: the two PCs and an attacker, each in its own network namespace, joined by a
//!   bridge in a fourth that forwards like a hub (learning off, so every frame is flooded to
//!   every port): what a mirrored switch port or a shared segment gives an attacker.
//! - [`Tap`]: an `AF_PACKET` socket in a namespace that records every IPv4/UDP frame it sees,
//!   with the source MAC (which tells the real sender from the attacker using its address).
//! - [`Forger`]: a UDP socket whose source is someone else's address and port
//!   (`IP_TRANSPARENT`), so the datagrams pass the services' source-address filter and reach
//!   their authentication.
//! - Forged contents: a picture of the attacker's own encoded as keymash payloads, RTP with the
//!   live stream's identity, RTCP asking for a quality and retransmissions, each plain or sealed
//!   under a key that is not the link's.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keymash_codec::{Encoder, EncoderConfig, FrameGeometry, I420Frame, PayloadSink, QualitySpec};
use keymash_core::key::PreSharedKey;
use keymash_core::{FrameNo, MashLevel, Quality};
use keymash_transport::rtcp::{app, nack, rr, KeymashApp};
use keymash_transport::rtp::{PayloadType, RtpHeader, RtpPacket, Ssrc};
use keymash_transport::security::{self, Direction, Endpoint, SessionSalt};
use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};

use crate::{Netns, NetnsError, NetnsPair};

/// The exhibit's two PCs and an attacker on one hub (see the module documentation). Every
/// namespace, and so every veth and the bridge, is removed on drop.
#[derive(Debug)]
pub struct Lan {
    /// The sender PC: its interface is `km-left`, its address [`NetnsPair::LEFT_V4`].
    pub sender: Netns,
    /// The receiver PC: `km-right`, [`NetnsPair::RIGHT_V4`].
    pub receiver: Netns,
    /// The attacker: `km-atk`, [`Lan::ATTACKER_V4`].
    pub attacker: Netns,
    /// The hub (bridge `km-hub`) the three are plugged into.
    pub hub: Netns,
}

impl Lan {
    pub const SENDER_V4: Ipv4Addr = NetnsPair::LEFT_V4;
    pub const RECEIVER_V4: Ipv4Addr = NetnsPair::RIGHT_V4;
    pub const ATTACKER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
    /// Locally administered MACs, set explicitly so the tap can tell who put a frame on the wire.
    pub const SENDER_MAC: [u8; 6] = [0x02, 0x6b, 0x6d, 0, 0, 1];
    pub const RECEIVER_MAC: [u8; 6] = [0x02, 0x6b, 0x6d, 0, 0, 2];
    pub const ATTACKER_MAC: [u8; 6] = [0x02, 0x6b, 0x6d, 0, 0, 3];

    /// Creates the four namespaces, the bridge and a veth from each PC to it. On failure,
    /// whatever was created is removed again (the guards drop).
    pub fn create(tag: &str) -> Result<Lan, NetnsError> {
        let hub = Netns::create(&format!("{tag}-h"))?;
        let sender = Netns::create(&format!("{tag}-s"))?;
        let receiver = Netns::create(&format!("{tag}-r"))?;
        let attacker = Netns::create(&format!("{tag}-a"))?;
        hub.run(
            "ip",
            ["link", "add", "km-hub", "type", "bridge", "stp_state", "0"],
        )?;
        hub.run("ip", ["link", "set", "km-hub", "up"])?;
        for (ns, port, interface, v4, mac) in [
            (
                &sender,
                "hub-s",
                NetnsPair::LEFT_INTERFACE,
                Self::SENDER_V4,
                Self::SENDER_MAC,
            ),
            (
                &receiver,
                "hub-r",
                NetnsPair::RIGHT_INTERFACE,
                Self::RECEIVER_V4,
                Self::RECEIVER_MAC,
            ),
            (
                &attacker,
                "hub-a",
                "km-atk",
                Self::ATTACKER_V4,
                Self::ATTACKER_MAC,
            ),
        ] {
            // Created in the hub with the peer end inside the PC's namespace: the fixed names
            // never appear in the root namespace, so parallel tests cannot collide.
            hub.run(
                "ip",
                [
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    interface,
                    "netns",
                    ns.name(),
                ],
            )?;
            hub.run("ip", ["link", "set", port, "master", "km-hub"])?;
            // No learning: every frame is flooded to every other port, as by a hub.
            hub.run(
                "ip",
                [
                    "link",
                    "set",
                    port,
                    "type",
                    "bridge_slave",
                    "learning",
                    "off",
                ],
            )?;
            hub.run("ip", ["link", "set", port, "up"])?;
            let mac = mac_text(mac);
            ns.run("ip", ["link", "set", interface, "address", &mac])?;
            ns.run("ip", ["addr", "add", &format!("{v4}/24"), "dev", interface])?;
            ns.run("ip", ["link", "set", interface, "up"])?;
        }
        Ok(Lan {
            sender,
            receiver,
            attacker,
            hub,
        })
    }
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One UDP datagram over IPv4 as a [`Tap`] saw it on the wire.
#[derive(Debug, Clone)]
pub struct Captured {
    /// When the tap read it.
    pub at: Instant,
    /// The Ethernet source: who really sent it.
    pub src_mac: [u8; 6],
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// An Ethernet frame's IPv4/UDP datagram, if it is one (unfragmented).
fn parse_frame(frame: &[u8], at: Instant) -> Option<Captured> {
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
    };
    if be16(12)? != 0x0800 {
        return None;
    }
    let ip = frame.get(14..)?;
    let (version, ihl) = (ip.first()? >> 4, usize::from(ip.first()? & 0x0f) * 4);
    let total = usize::from(be16(16)?);
    let fragment = be16(20)? & 0x3fff; // MF flag and offset
    if version != 4 || ip.get(9) != Some(&17) || fragment != 0 || total > ip.len() {
        return None;
    }
    let addr = |at: usize| -> Option<Ipv4Addr> {
        Some(Ipv4Addr::from(
            <[u8; 4]>::try_from(ip.get(at..at + 4)?).ok()?,
        ))
    };
    let udp = ip.get(ihl..total)?;
    let port =
        |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*udp.get(at)?, *udp.get(at + 1)?])) };
    let len = usize::from(port(4)?);
    Some(Captured {
        at,
        src_mac: frame.get(6..12)?.try_into().ok()?,
        src: SocketAddrV4::new(addr(12)?, port(0)?),
        dst: SocketAddrV4::new(addr(16)?, port(2)?),
        payload: udp.get(8..len)?.to_vec(),
    })
}

/// Records every IPv4/UDP frame seen in a namespace (on a hub port: everyone's), from a thread,
/// until dropped.
#[derive(Debug)]
pub struct Tap {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Captured>>>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tap {
    /// Starts recording in `netns`.
    pub fn start(netns: &Netns) -> Tap {
        let socket = netns
            .enter(|| -> nix::Result<OwnedFd> {
                let fd = socket::socket(
                    AddressFamily::Packet,
                    SockType::Raw,
                    SockFlag::SOCK_CLOEXEC,
                    SockProtocol::EthAll,
                )?;
                // Root may exceed rmem_max: a test thread descheduled on a loaded machine must
                // not lose frames it is meant to account for.
                socket::setsockopt(&fd, sockopt::RcvBufForce, &(64 << 20))?;
                // Short, so that a stop is noticed.
                socket::setsockopt(
                    &fd,
                    sockopt::ReceiveTimeout,
                    &nix::sys::time::TimeVal::new(0, 50_000),
                )?;
                Ok(fd)
            })
            .expect("enter the attacker's namespace")
            .expect("open an AF_PACKET socket (needs root)");
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen, errors) = (stop.clone(), seen.clone(), errors.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    match socket::recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                        Ok(len) => {
                            if let Some(c) = parse_frame(&buf[..len], Instant::now()) {
                                if let Ok(mut seen) = seen.lock() {
                                    seen.push(c);
                                }
                            }
                        }
                        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                        Err(e) => {
                            if let Ok(mut errors) = errors.lock() {
                                errors.push(e.to_string());
                            }
                            return;
                        }
                    }
                }
            })
        };
        Tap {
            stop,
            seen,
            errors,
            thread: Some(thread),
        }
    }

    /// What was recorded after the first `from` datagrams, in the order it was seen.
    pub fn captured_since(&self, from: usize) -> Vec<Captured> {
        let errors = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
        assert!(errors.is_empty(), "the tap stopped: {errors:?}");
        self.seen
            .lock()
            .map(|s| s.get(from..).unwrap_or_default().to_vec())
            .unwrap_or_default()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A UDP socket in the attacker's namespace that sends as `forged` (someone else's address and
/// port): `IP_TRANSPARENT` lets it bind an address that is not its own.
#[derive(Debug)]
pub struct Forger {
    socket: UdpSocket,
    pub forged: SocketAddrV4,
}

impl Forger {
    pub fn bind(netns: &Netns, forged: SocketAddrV4) -> Forger {
        let socket = netns
            .enter(|| -> nix::Result<UdpSocket> {
                let fd = socket::socket(
                    AddressFamily::Inet,
                    SockType::Datagram,
                    SockFlag::SOCK_CLOEXEC,
                    None,
                )?;
                socket::setsockopt(&fd, sockopt::IpTransparent, &true)?;
                socket::bind(fd.as_raw_fd(), &socket::SockaddrIn::from(forged))?;
                Ok(UdpSocket::from(fd))
            })
            .expect("enter the attacker's namespace")
            .unwrap_or_else(|e| panic!("bind a transparent socket to {forged}: {e}"));
        Forger { socket, forged }
    }

    /// Sends each of `datagrams` to `to`, paced a little so that no socket buffer on the way
    /// overflows (every forged datagram must reach the service that is to count it).
    pub fn send_all(&self, datagrams: &[Vec<u8>], to: SocketAddrV4) {
        for (i, d) in datagrams.iter().enumerate() {
            let sent = self
                .socket
                .send_to(d, SocketAddr::V4(to))
                .unwrap_or_else(|e| panic!("forged datagram {i} as {} to {to}: {e}", self.forged));
            assert_eq!(sent, d.len());
            if i % 16 == 15 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// The attacker's picture: black and white diagonal stripes two pixels wide, over a checkerboard
/// of 16x16 blocks in saturated red and blue, which nothing in the synthetic scene looks like.
pub fn spoof_picture(geometry: FrameGeometry) -> I420Frame {
    let (w, h) = (geometry.width(), geometry.height());
    let y = (0..w * h)
        .map(|i| {
            if ((i % w + i / w) / 2) % 2 == 1 {
                235
            } else {
                16
            }
        })
        .collect();
    let (cw, ch) = (geometry.chroma_width(), geometry.chroma_height());
    let odd = |i: usize| ((i % cw) / 8 + (i / cw) / 8) % 2 == 1;
    let chroma =
        |a: u8, b: u8| -> Vec<u8> { (0..cw * ch).map(|i| if odd(i) { a } else { b }).collect() };
    I420Frame::from_planes(geometry, y, chroma(240, 16), chroma(16, 240))
        .expect("spoof picture planes")
}

/// `picture` coded as frame `frame` at `quality`: the keymash payloads a real encoder would send.
pub fn encode_payloads(picture: &I420Frame, frame: FrameNo, quality: Quality) -> Vec<Vec<u8>> {
    let mut encoder =
        Encoder::new(EncoderConfig::new(picture.geometry())).expect("encoder for the spoof");
    let mut sink = PayloadSink::new();
    encoder
        .encode(
            frame,
            picture.view(),
            QualitySpec::Uniform(quality),
            &mut sink,
        )
        .expect("encode the spoof");
    sink.iter().map(<[u8]>::to_vec).collect()
}

/// What a sealed RTP packet of the live stream tells anyone who sees it: its SSRC, sequence
/// number, timestamp, payload type, and from the trailer the rollover counter and session salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveRtp {
    pub ssrc: Ssrc,
    pub seq: u16,
    pub timestamp: u32,
    pub payload_type: u8,
    pub roc: u32,
    pub salt: SessionSalt,
}

impl LiveRtp {
    pub fn read(sealed: &[u8]) -> Option<LiveRtp> {
        let p = RtpPacket::parse(sealed).ok()?;
        let (salt, _nonce) = security::sealed_identity(sealed)?;
        let t = sealed.len().checked_sub(security::RTP_OVERHEAD)?;
        let roc = u32::from_be_bytes(sealed.get(t..t + 4)?.try_into().ok()?);
        Some(LiveRtp {
            ssrc: p.ssrc,
            seq: p.seq,
            timestamp: p.timestamp,
            payload_type: p.payload_type,
            roc,
            salt,
        })
    }

    /// The extended sequence number (the nonce's counter).
    pub fn counter(&self) -> u64 {
        u64::from(self.roc) << 16 | u64::from(self.seq)
    }
}

/// Plain RTP packets of the live stream carrying `payloads`, numbered from extended sequence
/// number `first_counter` on (the last with the marker), with `timestamp`.
pub fn rtp_packets(
    live: &LiveRtp,
    first_counter: u64,
    timestamp: u32,
    payloads: &[Vec<u8>],
) -> Vec<(u64, Vec<u8>)> {
    let payload_type = PayloadType::new(live.payload_type).expect("the live payload type");
    payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| {
            let counter = first_counter + i as u64;
            let header = RtpHeader {
                payload_type,
                marker: i + 1 == payloads.len(),
                seq: counter as u16,
                timestamp,
                ssrc: live.ssrc,
            };
            (counter, header.to_packet(payload))
        })
        .collect()
}

/// A key that is not the link's: what an attacker can seal with.
pub fn attacker_key() -> PreSharedKey {
    PreSharedKey::from_bytes(keymash_service::random::bytes().expect("random key"))
}

/// A random session salt.
pub fn random_salt() -> SessionSalt {
    SessionSalt::new(keymash_service::random::bytes().expect("random salt"))
}

/// `packets` sealed as the sender would, but under `key`, with session `salt` in the trailer.
pub fn seal_rtp_with(
    key: &PreSharedKey,
    salt: SessionSalt,
    packets: &[(u64, Vec<u8>)],
) -> Vec<Vec<u8>> {
    let mut endpoint = Endpoint::new(key.clone(), Direction::SenderToReceiver, salt);
    packets
        .iter()
        .map(|(counter, p)| {
            let mut p = p.clone();
            endpoint.seal_rtp(&mut p, *counter).expect("seal");
            p
        })
        .collect()
}

/// An RTCP compound as net-rx writes one, with the attacker's wishes: a receiver report, a
/// generic NACK naming every sequence number in `nacked` of stream `media_ssrc`, and a KMSH APP
/// asking for `quality` at full mash.
pub fn feedback_compound(
    receiver_ssrc: Ssrc,
    media_ssrc: Ssrc,
    nacked: impl IntoIterator<Item = u16>,
    quality: Quality,
) -> Vec<u8> {
    let mut out = Vec::new();
    rr::write(receiver_ssrc, &[], &mut out).expect("receiver report");
    let entries = nack::entries_for(nacked);
    nack::write(receiver_ssrc, media_ssrc, &entries, &mut out).expect("NACK");
    app::write(
        receiver_ssrc,
        &KeymashApp {
            quality,
            mash: MashLevel::saturating(1.0),
        },
        &mut out,
    )
    .expect("APP");
    out
}

/// `compound` sealed as net-rx would, but under `key`, with session `salt` and RTCP index
/// `index` in the trailer.
pub fn seal_rtcp_with(
    key: &PreSharedKey,
    salt: SessionSalt,
    direction: Direction,
    index: u64,
    compound: &[u8],
) -> Vec<u8> {
    let mut endpoint = Endpoint::new(key.clone(), direction, salt);
    let mut out = compound.to_vec();
    endpoint.seal_rtcp(&mut out).expect("seal RTCP");
    // The index the attacker wants in the trailer (the tag was wrong anyway: not the link's key).
    let t = out.len() - security::RTCP_OVERHEAD;
    out[t + 12..t + 20].copy_from_slice(&index.to_be_bytes());
    out
}

/// The session salt a sealed RTCP compound carries, and its index.
pub fn rtcp_identity(sealed: &[u8]) -> Option<(SessionSalt, u64)> {
    let t = sealed.len().checked_sub(security::RTCP_OVERHEAD)?;
    let trailer = sealed.get(t..)?;
    if trailer.get(8..12)? != security::RTCP_TRAILER_NAME {
        return None;
    }
    let index = u64::from_be_bytes(trailer.get(12..20)?.try_into().ok()?);
    let salt = SessionSalt(trailer.get(20..28)?.try_into().ok()?);
    Some((salt, index))
}
