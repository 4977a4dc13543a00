//! Issue 14, "An authenticated, encrypted link": a third party on the exhibit's network, who sees
//! every frame and can send with the sender's or the receiver's address and port, gets nothing
//! onto the screen, does not change the quality, and cannot make the sender retransmit beyond
//! its cap; and every datagram it forges is counted.
//!
//! The whole pipeline runs: capture (synthetic scene), delay-buffer, encoder and net-tx in the
//! sender's namespace, net-rx and a headless display writing what it shows (Y4M) in the
//! receiver's, NACK on. The attacker's namespace is plugged into the same hub (a bridge that
//! floods every frame), records the stream with a packet socket, and sends with forged source
//! addresses (`IP_TRANSPARENT`), so its datagrams pass the services' source-address filter and
//! meet their authentication. It sends, in turn:
//!
//! (a) replays of the sealed video packets and sender reports it recorded: each counted by
//!     net-rx as `replayed`, none reaches the receive window (`duplicate` does not move);
//! (b) valid-looking RTP of the live stream (its SSRC, sequence numbers ahead, its timestamp)
//!     carrying keymash payloads of a picture of its own (stripes on a red and blue
//!     checkerboard), plain, sealed under its own key with the live session salt, and with a
//!     made-up salt, and forged sender reports: each counted by net-rx as `auth_failed`,
//!     exactly; none takes a place in the receive window (the sender's packets with those
//!     sequence numbers do not become duplicates) or reaches the display;
//! (c) RTCP to net-tx as the receiver: a KMSH APP asking for quality 100 and generic NACKs for
//!     the last 2048 packets, plain and sealed under its own key (live and made-up salts), and
//!     replays of the receiver's real feedback: counted by net-tx as `auth_failed` and
//!     `replayed`, exactly; no quality 100 ever reaches the quality cell or the bitstream;
//!     net-tx acts on no NACK the receiver did not send (its `nacks_received` stays within the
//!     receiver's `nacks_sent`), and the retransmissions on the wire stay within 15% of the
//!     media bytes plus the burst allowance.
//!
//! What reached the screen is judged against what the sender really sent: the test has the
//! link's key, so it opens the recorded stream and decodes it; every macroblock of every
//! picture the display showed must be a macroblock of the genuine stream (the frame itself, or
//! an earlier one left by a lost packet), none the attacker's picture, and every frame number
//! shown one the sender sent.
//!
//! No fixed sleep bounds anything: each wait is for the services' own counters or output, with
//! a deadline that names what did not happen.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use keymash_codec::{Decoder, FrameGeometry, I420Frame, PayloadHeader};
use keymash_core::{FrameNo, Quality};
use keymash_pipeline::{QualityRecord, Service, QUALITY_CELL};
use keymash_shm::{CellReader, ServiceStats};
use keymash_tests::forge::{
    attacker_key, encode_payloads, feedback_compound, random_salt, rtcp_identity, rtp_packets,
    seal_rtcp_with, seal_rtp_with, spoof_picture, Captured, Forger, Lan, LiveRtp, Tap,
};
use keymash_tests::receiver::{
    crop_picture, differing_macroblocks, read_tagged_y4m, CellWatch, ReceiverSetup,
};
use keymash_tests::require_root;
use keymash_tests::sender::first_macroblock_quality;
use keymash_transport::config::RETRANSMIT_BURST_BYTES;
use keymash_transport::rtcp::sr::{self, SenderInfoFields};
use keymash_transport::rtcp::{parse_compound, RtcpPacket};
use keymash_transport::rtp::{classify, DatagramKind, RtpPacket};
use keymash_transport::security::{self, Direction, Endpoint};
use keymash_transport::TransportConfig;

/// The display's border around the picture (a multiple of 8, used as is).
const BORDER: usize = 16;
/// What the attacker asks net-tx for; the receiver, with nobody mashing, asks for 10.
const FORGED_QUALITY: u8 = 100;
/// Generous: a loaded two-core machine starts six services and fills the stream.
const STARTUP: Duration = Duration::from_secs(60);
/// Deadline for the services to count what was sent to them (they publish every 0.1 / 0.5 s).
const COUNTED_WITHIN: Duration = Duration::from_secs(20);
/// Recorded packets at least this old are replayed: long past the retransmission deadline
/// (150 ms), so a packet the receiver lost has been resent (or given up) by then.
const REPLAY_AGE: Duration = Duration::from_millis(400);

fn stats(setup: &ReceiverSetup, service: Service) -> Option<ServiceStats> {
    CellReader::<ServiceStats>::open(&setup.segment(&service.stats_cell()))
        .ok()?
        .load()
        .ok()
}

fn counter(setup: &ReceiverSetup, service: Service, name: &str) -> u64 {
    stats(setup, service)
        .and_then(|s| s.counter(name))
        .unwrap_or(0)
}

/// Waits until `done` holds, failing the test with `what` after `within`.
fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `service` has published its statistics `times` more times, and returns them.
fn publications_later(setup: &ReceiverSetup, service: Service, times: usize) -> ServiceStats {
    let mut last = stats(setup, service).map_or(0, |s| s.heartbeat_ns());
    let mut seen = 0;
    let deadline = Instant::now() + COUNTED_WITHIN;
    loop {
        let s = stats(setup, service).expect("the statistics cell");
        if s.heartbeat_ns() != last {
            last = s.heartbeat_ns();
            seen += 1;
            if seen >= times {
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{service} stopped publishing its statistics"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until counter `name` of `service` has grown to `target`, then until two more
/// publications have passed (anything still in flight is in), and returns its value then.
fn counted(setup: &ReceiverSetup, service: Service, name: &str, target: u64) -> u64 {
    let deadline = Instant::now() + COUNTED_WITHIN;
    loop {
        let now = counter(setup, service, name);
        if now >= target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "waited {COUNTED_WITHIN:?} for {service} to count {name} = {target}: it counted {now}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    publications_later(setup, service, 2)
        .counter(name)
        .unwrap_or(0)
}

/// One genuine media packet, opened with the link's key.
#[derive(Debug, Clone)]
struct GenuinePayload {
    counter: u64,
    frame: FrameNo,
    quality: Option<u8>,
    payload: Vec<u8>,
}

/// The stream as it really went over the wire, told from the attacker's datagrams by the
/// Ethernet source, and opened with the link's key (which the test has, the attacker not).
struct Wire {
    sender: SocketAddrV4,
    receiver: SocketAddrV4,
    opener: Endpoint,
    read: usize,
    nonces: HashSet<[u8; 12]>,
    media: Vec<GenuinePayload>,
    /// Sealed media packets (first transmissions) with the time the tap saw them.
    sealed_media: Vec<(Instant, Vec<u8>)>,
    /// Sealed sender reports.
    sealed_reports: Vec<(Instant, Vec<u8>)>,
    /// The receiver's sealed feedback.
    feedback: Vec<(Instant, Vec<u8>)>,
    media_bytes: u64,
    /// Datagrams seen before, byte for byte: retransmissions (with the time the tap saw them).
    resent: Vec<(Instant, u64)>,
}

impl Wire {
    fn new(setup: &ReceiverSetup) -> Wire {
        Wire {
            sender: SocketAddrV4::new(Lan::SENDER_V4, setup.sender_port),
            receiver: SocketAddrV4::new(Lan::RECEIVER_V4, setup.video_port),
            // Opens what the sender seals: the receiving side's endpoint, never confirmed.
            opener: Endpoint::new(
                setup.key.clone(),
                Direction::ReceiverToSender,
                random_salt(),
            ),
            read: 0,
            nonces: HashSet::new(),
            media: Vec::new(),
            sealed_media: Vec::new(),
            sealed_reports: Vec::new(),
            feedback: Vec::new(),
            media_bytes: 0,
            resent: Vec::new(),
        }
    }

    /// Takes in what the tap recorded since the last call.
    fn update(&mut self, tap: &Tap) {
        let captured = tap.captured_since(self.read);
        self.read += captured.len();
        for c in &captured {
            self.take(c);
        }
    }

    fn take(&mut self, c: &Captured) {
        if c.src_mac == Lan::RECEIVER_MAC && c.src == self.receiver && c.dst == self.sender {
            if classify(&c.payload) == DatagramKind::Rtcp {
                self.feedback.push((c.at, c.payload.clone()));
            }
            return;
        }
        if c.src_mac != Lan::SENDER_MAC || c.src != self.sender || c.dst != self.receiver {
            return;
        }
        assert_ne!(
            c.src_mac,
            Lan::ATTACKER_MAC,
            "the attacker's datagram taken for the sender's"
        );
        let Some((_, nonce)) = security::sealed_identity(&c.payload) else {
            panic!(
                "net-tx sent a datagram that is not sealed ({} bytes)",
                c.payload.len()
            );
        };
        if !self.nonces.insert(nonce) {
            self.resent.push((c.at, c.payload.len() as u64));
            return;
        }
        match classify(&c.payload) {
            DatagramKind::Rtcp => self.sealed_reports.push((c.at, c.payload.clone())),
            DatagramKind::Rtp => {
                let opened = self
                    .opener
                    .open(c.at, &c.payload)
                    .expect("the sender's packet opens with the link's key");
                let rtp = RtpPacket::parse(&opened.plain).expect("genuine RTP");
                let header = PayloadHeader::parse(rtp.payload).expect("genuine payload header");
                let live = LiveRtp::read(&c.payload).expect("sealed RTP");
                self.media_bytes += c.payload.len() as u64;
                self.sealed_media.push((c.at, c.payload.clone()));
                self.media.push(GenuinePayload {
                    counter: live.counter(),
                    frame: header.frame_no,
                    quality: first_macroblock_quality(rtp.payload),
                    payload: rtp.payload.to_vec(),
                });
            }
            DatagramKind::Other => panic!("net-tx sent something that is neither RTP nor RTCP"),
        }
    }

    /// The sequence numbers net-rx asked to have resent (RTCP is authenticated, not encrypted:
    /// anyone on the wire reads its NACKs).
    fn nacked(&self) -> HashSet<u16> {
        self.feedback
            .iter()
            .filter_map(|(_, sealed)| {
                sealed.get(..sealed.len().checked_sub(security::RTCP_OVERHEAD)?)
            })
            .flat_map(|plain| {
                parse_compound(plain)
                    .filter_map(Result::ok)
                    .collect::<Vec<_>>()
            })
            .flat_map(|packet| match packet {
                RtcpPacket::Nack(nack) => nack.lost_wire_seqs().collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn newest_frame(&self) -> FrameNo {
        self.media.last().map_or(FrameNo(0), |p| p.frame)
    }

    fn resent_since(&self, since: Instant) -> u64 {
        self.resent.iter().filter(|(at, _)| *at >= since).count() as u64
    }
}

/// The decoded picture of `payloads` alone on a grey start.
fn decode(geometry: FrameGeometry, payloads: &[Vec<u8>]) -> I420Frame {
    let mut decoder = Decoder::new(geometry);
    for p in payloads {
        decoder.apply(p).expect("the spoof decodes");
    }
    decoder.frame().clone()
}

#[test]
fn a_third_party_forging_either_pc_gets_nothing_on_screen_no_quality_and_no_retransmissions() {
    require_root();
    let lan = Lan::create("forge").expect("the exhibit's network with an attacker on it");
    let setup = ReceiverSetup::two_pcs(
        "forgery",
        &format!(
            "[transport]\nnack = true\n[display]\noutput = \"y4m:{{dir}}/shown.y4m\"\n\
             glow_border_px = {BORDER}\nplayout_max_ms = 50\n"
        ),
    );
    let geometry = setup.geometry();
    let shown_path = setup.dir.join("shown.y4m");
    let tap = Tap::start(&lan.attacker);
    let quality_watch = CellWatch::<QualityRecord>::start(setup.segment(QUALITY_CELL));
    let _net_rx = setup.start_in(&lan.receiver, "keymash-net-rx", &[]);
    let _display = setup.start_in(&lan.receiver, "keymash-display", &[]);
    let _capture = setup.start_in(&lan.sender, "keymash-capture", &[]);
    let _delay = setup.start_in(&lan.sender, "keymash-delay-buffer", &[]);
    let _encoder = setup.start_in(&lan.sender, "keymash-encoder", &[]);
    let _net_tx = setup.start_in(&lan.sender, "keymash-net-tx", &[]);
    // Its socket is bound before it says READY: feedback sent from now on reaches it.
    let net_tx_listening = Instant::now();
    let mut wire = Wire::new(&setup);
    let (to_receiver, to_sender) = (wire.receiver, wire.sender);

    // The stream flows and each side has confirmed the other: net-tx stores the receiver's
    // quality, net-rx delivers, the display shows, and the tap has seen both directions.
    let old_enough = |at: &Instant| at.elapsed() >= REPLAY_AGE;
    wait_until(
        "the pipeline to stream (net-rx delivering, the display showing, net-tx storing the \
         receiver's quality) and the tap to record enough of it",
        STARTUP,
        || {
            wire.update(&tap);
            // Enough recorded, and old enough, to replay.
            let media = wire.sealed_media.iter().filter(|(at, _)| old_enough(at));
            let reports = wire.sealed_reports.iter().filter(|(at, _)| old_enough(at));
            let feedback = wire
                .feedback
                .iter()
                .filter(|(at, _)| *at > net_tx_listening && old_enough(at));
            let confirmed = quality_watch
                .stores()
                .iter()
                .any(|(_, r)| r.from_receiver());
            confirmed
                && counter(&setup, Service::NetRx, "delivered") >= 30
                && media.count() >= 150
                && reports.count() >= 3
                && feedback.count() >= 10
                && std::fs::read(&shown_path).is_ok_and(|b| b.contains(&b'\n'))
                && read_tagged_y4m(&shown_path).len() >= 10
        },
    );
    let attack_start = Instant::now();
    let rx_before = stats(&setup, Service::NetRx).expect("net-rx statistics");
    let tx_before = stats(&setup, Service::NetTx).expect("net-tx statistics");
    let rx0 = |name| rx_before.counter(name).unwrap_or(0);
    let tx0 = |name| tx_before.counter(name).unwrap_or(0);
    let unconfirmed_before = rx_before.gauge("unconfirmed");
    assert_eq!(
        rx0("auth_failed"),
        0,
        "net-rx failed authentication before any attack"
    );
    assert_eq!(
        tx0("auth_failed"),
        0,
        "net-tx failed authentication before any attack"
    );

    // (a) Replays of recorded video packets and sender reports, to net-rx as net-tx.
    let as_sender = Forger::bind(&lan.attacker, to_sender);
    wire.update(&tap);
    let mut replays: Vec<Vec<u8>> = Vec::new();
    // Not those net-rx reported missing: one it never got would be new to it (authentic, and
    // accepted as the retransmission it asked for would have been).
    let nacked = wire.nacked();
    let media: Vec<&Vec<u8>> = wire
        .sealed_media
        .iter()
        .filter(|(at, p)| old_enough(at) && !nacked.contains(&u16::from_be_bytes([p[2], p[3]])))
        .map(|(_, p)| p)
        .collect();
    // The oldest recorded (from before net-rx trusted the stream, too) and the newest.
    replays.extend(media.iter().take(50).map(|p| (*p).clone()));
    replays.extend(media.iter().skip(50).rev().take(100).map(|p| (*p).clone()));
    replays.extend(
        wire.sealed_reports
            .iter()
            .filter(|(at, _)| old_enough(at))
            .take(10)
            .map(|(_, p)| p.clone()),
    );
    assert!(
        replays.len() >= 150,
        "{} recorded packets to replay",
        replays.len()
    );
    as_sender.send_all(&replays, to_receiver);
    let replayed = counted(
        &setup,
        Service::NetRx,
        "replayed",
        rx0("replayed") + replays.len() as u64,
    ) - rx0("replayed");
    wire.update(&tap);
    // A legitimate retransmission of a packet that had arrived after all is a replay too.
    let resent = wire.resent_since(attack_start - Duration::from_secs(1));
    assert!(
        replayed <= replays.len() as u64 + resent,
        "net-rx counted {replayed} replays for the {} sent ({resent} retransmissions on the wire)",
        replays.len()
    );
    let rx_a = stats(&setup, Service::NetRx).expect("net-rx statistics");
    assert_eq!(
        rx_a.counter("auth_failed"),
        Some(0),
        "authentic replays failed authentication"
    );
    assert!(
        rx_a.counter("duplicate").unwrap_or(0) - rx0("duplicate") <= resent,
        "replays reached the receive window as duplicates"
    );

    // (b) Valid-looking RTP of the live stream with the attacker's picture, and forged sender
    // reports, to net-rx as net-tx: plain, sealed under the attacker's key with the live
    // session salt, and with a salt of its own.
    wire.update(&tap);
    let (_, newest) = wire.sealed_media.last().expect("a recorded packet");
    let live = LiveRtp::read(newest).expect("the live stream's identity");
    let spoof = spoof_picture(geometry);
    let key = attacker_key();
    let mut forged_rtp: Vec<Vec<u8>> = Vec::new();
    let mut spoof_frames = Vec::new();
    // Just ahead of the stream, where a receiver that did not authenticate would take them in
    // place of the sender's packets still to come (its own copies then being duplicates), each
    // spoofed frame numbered and timed a second ahead, so that a display would show it and
    // then take the sender's frames for late ones. Only the replay window could count them as
    // anything but forgeries: the one sealed with the live salt claims a rollover counter one
    // ahead (the same sequence numbers on the wire), a counter net-tx reaches after 65,536
    // packets, so it is checked against the key, fails and is counted as such, whichever of
    // it and the sender's packet arrives first.
    let genuine_frame = wire.newest_frame().0;
    let mut next_counter = live.counter() + 40;
    for variant in 0..3u64 {
        let frame = FrameNo(genuine_frame + 30 + variant);
        let payloads = encode_payloads(&spoof, frame, Quality::saturating(90));
        let timestamp = live.timestamp.wrapping_add(3000 * (30 + variant as u32));
        let plain = rtp_packets(&live, next_counter, timestamp, &payloads);
        next_counter += plain.len() as u64;
        spoof_frames.push((frame, payloads));
        match variant {
            0 => forged_rtp.extend(plain.into_iter().map(|(_, p)| p)),
            1 => {
                let next_roc: Vec<(u64, Vec<u8>)> =
                    plain.into_iter().map(|(c, p)| (c + (1 << 16), p)).collect();
                forged_rtp.extend(seal_rtp_with(&key, live.salt, &next_roc));
            }
            _ => forged_rtp.extend(seal_rtp_with(&key, random_salt(), &plain)),
        }
    }
    let report = {
        let mut out = Vec::new();
        sr::write(
            &SenderInfoFields {
                ssrc: live.ssrc,
                ntp_timestamp: 1 << 40,
                rtp_timestamp: live.timestamp,
                packet_count: 1,
                octet_count: 1,
            },
            &[],
            &mut out,
        )
        .expect("sender report");
        out
    };
    let forged_reports = [
        report.clone(),
        seal_rtcp_with(
            &key,
            live.salt,
            Direction::SenderToReceiver,
            1 << 40,
            &report,
        ),
        seal_rtcp_with(&key, random_salt(), Direction::SenderToReceiver, 7, &report),
    ];
    let forged_to_rx = forged_rtp.len() + forged_reports.len();
    as_sender.send_all(&forged_rtp, to_receiver);
    as_sender.send_all(&forged_reports, to_receiver);
    let auth_failed_rx = counted(&setup, Service::NetRx, "auth_failed", forged_to_rx as u64);
    assert_eq!(
        auth_failed_rx, forged_to_rx as u64,
        "net-rx: every forged datagram fails authentication and is counted once"
    );
    wire.update(&tap);
    let rx_b = stats(&setup, Service::NetRx).expect("net-rx statistics");
    let resent = wire.resent_since(attack_start - Duration::from_secs(1));
    assert!(
        rx_b.counter("duplicate").unwrap_or(0) - rx0("duplicate") <= resent,
        "forged packets took the place of the sender's in the receive window: the sender's arrived as duplicates"
    );
    assert_eq!(
        rx_b.counter("unparseable_payloads"),
        Some(0),
        "net-rx passed on payloads that are not keymash payloads"
    );

    // (c) RTCP to net-tx as net-rx: quality 100 and NACKs for the last 2048 packets, plain,
    // sealed under the attacker's key (the live receiver session's salt, and its own), and
    // replays of net-rx's real feedback.
    let as_receiver = Forger::bind(&lan.attacker, to_receiver);
    wire.update(&tap);
    let (_, real_feedback) = wire.feedback.last().expect("recorded feedback");
    let receiver_ssrc =
        keymash_transport::Ssrc(u32::from_be_bytes(real_feedback[4..8].try_into().unwrap()));
    let (receiver_salt, receiver_index) = rtcp_identity(real_feedback).expect("sealed feedback");
    let (_, newest) = wire.sealed_media.last().expect("a recorded packet");
    let live = LiveRtp::read(newest).expect("the live stream's identity");
    // In order, so that 17 fit one NACK entry: 2048 packets in 121 entries, one datagram.
    let nacked = (0..2048u16).rev().map(|back| live.seq.wrapping_sub(back));
    let compound = feedback_compound(
        receiver_ssrc,
        live.ssrc,
        nacked,
        Quality::new(FORGED_QUALITY).expect("quality"),
    );
    let mut forged_rtcp: Vec<Vec<u8>> = Vec::new();
    for round in 0..20u64 {
        forged_rtcp.push(compound.clone());
        forged_rtcp.push(seal_rtcp_with(
            &key,
            receiver_salt,
            Direction::ReceiverToSender,
            receiver_index + 1_000_000 + round,
            &compound,
        ));
        forged_rtcp.push(seal_rtcp_with(
            &key,
            random_salt(),
            Direction::ReceiverToSender,
            round,
            &compound,
        ));
    }
    // Only what net-tx received: feedback net-rx sent before net-tx was listening is new to
    // net-tx (authentic, and accepted as it would have been on time).
    let feedback_replays: Vec<Vec<u8>> = wire
        .feedback
        .iter()
        .filter(|(at, _)| *at > net_tx_listening && old_enough(at))
        .rev()
        .take(30)
        .map(|(_, p)| p.clone())
        .collect();
    assert!(
        feedback_replays.len() >= 10,
        "{} recorded feedback packets to replay",
        feedback_replays.len()
    );
    // Spread over about a second, across ten of net-rx's feedback intervals: had one been
    // taken, the quality cell would hold 100 for most of that second.
    for chunk in forged_rtcp.chunks(6) {
        as_receiver.send_all(chunk, to_sender);
        std::thread::sleep(Duration::from_millis(50));
    }
    as_receiver.send_all(&feedback_replays, to_sender);
    let auth_failed_tx = counted(
        &setup,
        Service::NetTx,
        "auth_failed",
        forged_rtcp.len() as u64,
    );
    let replayed_tx = counted(
        &setup,
        Service::NetTx,
        "replayed",
        tx0("replayed") + feedback_replays.len() as u64,
    ) - tx0("replayed");
    assert_eq!(
        auth_failed_tx,
        forged_rtcp.len() as u64,
        "net-tx: every forged RTCP compound fails authentication and is counted once"
    );
    assert_eq!(
        replayed_tx,
        feedback_replays.len() as u64,
        "net-tx: every replayed feedback packet is counted as replayed"
    );
    let attack_end = Instant::now();
    let newest_at_attack_end = {
        wire.update(&tap);
        wire.newest_frame()
    };

    // The stream goes on: the display shows frames sent after the attack.
    wait_until(
        "the display to show frames sent after the attack",
        COUNTED_WITHIN,
        || {
            read_tagged_y4m(&shown_path)
                .last()
                .is_some_and(|(f, _)| f.0 >= newest_at_attack_end.0 + 15)
        },
    );
    // Totals now: net-tx's last publication first, then net-rx's after it, so that every NACK
    // net-tx counted had been sent (and counted) by net-rx.
    let tx_end = publications_later(&setup, Service::NetTx, 1);
    let rx_end = publications_later(&setup, Service::NetRx, 2);
    let shown = read_tagged_y4m(&shown_path);
    // The tap saw every packet before the display could show it, but its thread may not have
    // read the last ones yet.
    let newest_shown = shown.iter().map(|(f, _)| *f).max().unwrap_or(FrameNo(0));
    wait_until(
        &format!("the tap to have recorded frame {newest_shown}, which the display showed"),
        COUNTED_WITHIN,
        || {
            wire.update(&tap);
            wire.newest_frame() > newest_shown
        },
    );

    // Nothing forged was taken for real.
    assert_eq!(
        rx_end.counter("auth_failed"),
        Some(forged_to_rx as u64),
        "net-rx's auth_failed moved after the attack"
    );
    assert_eq!(
        tx_end.counter("auth_failed"),
        Some(forged_rtcp.len() as u64),
        "net-tx's auth_failed moved after the attack"
    );
    assert_eq!(
        rx_end.gauge("unconfirmed"),
        unconfirmed_before,
        "a forged datagram authenticated as a session of its own"
    );
    let nacks_received = tx_end.counter("nacks_received").unwrap_or(0);
    let nacks_sent = rx_end.counter("nacks_sent").unwrap_or(0);
    assert!(
        nacks_received <= nacks_sent,
        "net-tx took {nacks_received} NACKed packets, net-rx asked for {nacks_sent}: forged NACKs were acted on"
    );

    // The quality: never 100 in the quality cell, nor in the bitstream.
    let stores = quality_watch.stores();
    let forged_stores: Vec<_> = stores
        .iter()
        .filter(|(_, r)| r.quality().map(Quality::get) == Some(FORGED_QUALITY))
        .collect();
    assert!(
        forged_stores.is_empty(),
        "net-tx stored the forged quality: {forged_stores:?}"
    );
    let receiver_asks: HashSet<u8> = stores
        .iter()
        .filter(|(_, r)| r.from_receiver())
        .filter_map(|(_, r)| r.quality().map(Quality::get))
        .collect();
    let coded_at_forged = wire
        .media
        .iter()
        .filter(|p| p.quality == Some(FORGED_QUALITY))
        .count();
    assert_eq!(
        coded_at_forged, 0,
        "the encoder coded {coded_at_forged} payloads at the forged quality"
    );

    // Retransmissions within the cap: 15% of the media bytes plus the burst allowance, over
    // everything the sender put on the wire.
    let share = TransportConfig::default().retransmit_share;
    let resent_bytes: u64 = wire.resent.iter().map(|(_, len)| len).sum();
    let cap = share * wire.media_bytes as f64 + RETRANSMIT_BURST_BYTES;
    assert!(
        resent_bytes as f64 <= cap,
        "{resent_bytes} bytes retransmitted, the cap is {cap:.0} ({} media bytes)",
        wire.media_bytes
    );

    // The screen: every shown frame number is one the sender sent, and every macroblock shown
    // is one of the genuine stream's, none of the attacker's picture.
    let spoof_decoded: Vec<(FrameNo, I420Frame)> = spoof_frames
        .iter()
        .map(|(f, payloads)| (*f, decode(geometry, payloads)))
        .collect();
    let mut frames: BTreeMap<FrameNo, Vec<&GenuinePayload>> = BTreeMap::new();
    for p in &wire.media {
        frames.entry(p.frame).or_default().push(p);
    }
    let shown_by_frame: BTreeMap<FrameNo, Vec<I420Frame>> =
        shown.iter().fold(BTreeMap::new(), |mut m, (f, canvas)| {
            m.entry(*f)
                .or_default()
                .push(crop_picture(canvas, BORDER, geometry));
            m
        });
    // The display never goes back to an older frame (a replayed one would).
    for pair in shown.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "the display showed frame {} after frame {}",
            pair[1].0,
            pair[0].0
        );
    }
    let sent: HashSet<FrameNo> = frames.keys().copied().collect();
    let foreign: Vec<FrameNo> = shown_by_frame
        .keys()
        .filter(|f| !sent.contains(f))
        .copied()
        .collect();
    assert!(
        foreign.is_empty(),
        "the display showed frame numbers the sender never sent: {foreign:?} (spoofed: {:?})",
        spoof_frames.iter().map(|(f, _)| *f).collect::<Vec<_>>()
    );
    let mut mirror = Decoder::new(geometry);
    let mut history: VecDeque<I420Frame> = VecDeque::new();
    let (mut exact, mut with_stale_blocks) = (0, 0);
    for (frame, mut payloads) in frames {
        payloads.sort_by_key(|p| p.counter);
        for p in payloads {
            mirror.apply(&p.payload).expect("a genuine payload decodes");
        }
        for picture in shown_by_frame.get(&frame).into_iter().flatten() {
            for (spoofed, decoded) in &spoof_decoded {
                let alike = geometry.mb_count() - differing_macroblocks(picture, decoded).len();
                assert_eq!(
                    alike, 0,
                    "frame {frame} on screen has {alike} macroblocks of the attacker's picture {spoofed}"
                );
            }
            let differing = differing_macroblocks(picture, mirror.frame());
            if differing.is_empty() {
                exact += 1;
                continue;
            }
            // A lost packet leaves blocks of an earlier frame: each must be genuine.
            let earlier: Vec<Vec<usize>> = history
                .iter()
                .map(|h| differing_macroblocks(picture, h))
                .collect();
            for mb in differing {
                assert!(
                    earlier.iter().any(|d| !d.contains(&mb)),
                    "frame {frame} on screen: macroblock {mb} is in no picture the sender sent"
                );
            }
            with_stale_blocks += 1;
        }
        history.push_front(mirror.frame().clone());
        history.truncate(90);
    }
    let shown_after_attack = shown.iter().filter(|(f, _)| f.0 > genuine_frame).count();
    assert!(
        shown_after_attack >= 15,
        "only {shown_after_attack} frames shown during and after the attack"
    );

    eprintln!(
        "stream: {} media packets ({} bytes) and {} sender reports on the wire, {} retransmissions ({resent_bytes} bytes, \
         cap {cap:.0}); frames {}..={}; the receiver asked for quality {receiver_asks:?}",
        wire.media.len(),
        wire.media_bytes,
        wire.sealed_reports.len(),
        wire.resent.len(),
        wire.media.first().map_or(0, |p| p.frame.0),
        wire.newest_frame().0,
    );
    eprintln!(
        "(a) {} replays to net-rx: replayed +{replayed}, duplicate +{}",
        replays.len(),
        rx_a.counter("duplicate").unwrap_or(0) - rx0("duplicate")
    );
    eprintln!(
        "(b) {} forged RTP ({} spoof frames of {} payloads, plain / attacker key with the live salt / own salt) and {} forged \
         sender reports to net-rx: auth_failed {auth_failed_rx}",
        forged_rtp.len(),
        spoof_frames.len(),
        spoof_frames[0].1.len(),
        forged_reports.len()
    );
    eprintln!(
        "(c) {} forged RTCP (quality {FORGED_QUALITY}, NACK x 2048) and {} replayed feedback to net-tx: auth_failed {auth_failed_tx}, \
         replayed {replayed_tx}; nacks_received {nacks_received} (net-rx sent {nacks_sent}), retransmitted {}, \
         retransmit_refused {}, retransmit_capped {}; {} quality stores, none at {FORGED_QUALITY}",
        forged_rtcp.len(),
        feedback_replays.len(),
        tx_end.counter("retransmitted").unwrap_or(0),
        tx_end.counter("retransmit_refused").unwrap_or(0),
        tx_end.counter("retransmit_capped").unwrap_or(0),
        stores.len()
    );
    let all = |s: &ServiceStats| {
        s.counters()
            .map(|(name, value)| format!("{name} {value}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!("net-rx: {}", all(&rx_end));
    eprintln!("net-tx: {}", all(&tx_end));
    eprintln!(
        "screen: {} frames shown, {exact} exactly the sender's, {with_stale_blocks} with stale genuine blocks; attack took {:?}",
        shown.len(),
        attack_end - attack_start
    );
}
