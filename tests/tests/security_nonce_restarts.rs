//! A sender restarted 100 times in a row under the same key never repeats a nonce.
//!
//! The real keymash-net-tx, fed by the real capture, delay buffer and encoder (started once), is
//! killed with SIGKILL and started again 100 times; the test owns the receiver's UDP port and
//! plays net-rx (keymash-transport's `Receiver`, which confirms each new sender session and
//! sends NACKs), so every run sends media, FEC repair, sender reports and retransmissions.
//! Every datagram is recorded as it came off the wire and checked on its own bytes:
//!
//! - it is sealed and authenticates under the pre-shared key (opened by a receiver-side
//!   `Endpoint` with no replay state), so the nonces below belong to real packets;
//! - each run has one session salt, and no two runs share one;
//! - no AEAD key ever sees a nonce twice: a session key is HKDF(key, salt, direction), so the
//!   pair (salt, nonce) with nonce = SSRC | class | counter must be new for every packet
//!   (all these packets travel sender to receiver). The same (salt, nonce) again is allowed only
//!   for the very same bytes: a NACK retransmission, which reveals nothing. Anything else is a
//!   nonce reuse and fails the test.
//!
//! Every wait has a deadline that fails the test naming what it waited for; none is a pause.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use keymash_tests::sender::SenderPipeline;
use keymash_transport::rtp::{classify, DatagramKind};
use keymash_transport::security::{sealed_identity, Direction, Endpoint, SessionSalt};
use keymash_transport::transport_settings;
use keymash_transport::udp::{PeerSocket, SocketBuffers, RECV_BUFFER_LEN};
use keymash_transport::Receiver;

/// Starts of net-tx under the one key.
const RUNS: usize = 100;
/// What each run must send before it is killed: media and repair packets (several frames),
/// two sender reports (the one at start and the one answering the receiver's confirmation).
const MEDIA_PER_RUN: usize = 20;
const REPAIR_PER_RUN: usize = 2;
const RTCP_PER_RUN: usize = 2;
/// A run also waits for a retransmission (the test withholds packets from its receiver so it
/// sends NACKs), but not beyond this many media packets: retransmissions are bounded by rate.
const MEDIA_WITHOUT_RETRANSMISSION: usize = 200;
/// Withhold from the test's receiver the first arrival of media packets whose counter is
/// divisible by this, and every repair packet (FEC would recover them), so it NACKs them and
/// net-tx resends the same bytes.
const WITHHOLD_EVERY: u64 = 8;
/// A run that has not sent the packets above within this long failed (at 30 fps they take well
/// under a second; the bound is for a stuck net-tx on a loaded machine, not a measurement).
const RUN_DEADLINE: Duration = Duration::from_secs(20);

/// What a run sent, by kind.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    media: usize,
    repair: usize,
    rtcp: usize,
    retransmissions: usize,
}

impl Counts {
    fn enough(&self) -> bool {
        self.media >= MEDIA_PER_RUN
            && self.repair >= REPAIR_PER_RUN
            && self.rtcp >= RTCP_PER_RUN
            && (self.retransmissions > 0 || self.media >= MEDIA_WITHOUT_RETRANSMISSION)
    }
}

/// A nonce shown as its parts: SSRC, class, counter.
struct NonceParts([u8; 12]);

impl fmt::Debug for NonceParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.0;
        let ssrc = u32::from_be_bytes([n[0], n[1], n[2], n[3]]);
        let counter = u64::from_be_bytes([0, n[5], n[6], n[7], n[8], n[9], n[10], n[11]]);
        write!(f, "ssrc {ssrc:#010x} class {} counter {counter}", n[4])
    }
}

/// Every datagram seen, checked as it arrives.
struct Ledger {
    key: keymash_core::key::PreSharedKey,
    /// (session salt, nonce) -> (run, the sealed bytes).
    nonces: HashMap<(SessionSalt, [u8; 12]), (usize, Vec<u8>)>,
    /// The salt of each run.
    salts: Vec<Option<SessionSalt>>,
    counts: Vec<Counts>,
}

/// What [`Ledger::record`] made of a datagram.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The first arrival of a media packet (with its counter), a repair packet or RTCP.
    Media(u64),
    Repair,
    Rtcp,
    /// The very bytes of an earlier packet again.
    Retransmission,
}

impl Ledger {
    fn record(&mut self, run: usize, datagram: &[u8]) -> Seen {
        let (salt, nonce) = sealed_identity(datagram).unwrap_or_else(|| {
            panic!(
                "run {run}: a datagram of {} bytes that is not sealed",
                datagram.len()
            )
        });
        // The nonce is this packet's: its SSRC (the RTP header's, or the RTCP sender's), its
        // class (RTP 0, RTCP 1) and, for RTP, the header's sequence number as the counter's low
        // 16 bits.
        let (ssrc, class) = match classify(datagram) {
            DatagramKind::Rtp => (&datagram[8..12], 0),
            DatagramKind::Rtcp => (&datagram[4..8], 1),
            DatagramKind::Other => panic!("run {run}: a datagram that is neither RTP nor RTCP"),
        };
        assert!(
            nonce[..4] == ssrc[..]
                && nonce[4] == class
                && (class == 1 || nonce[10..12] == datagram[2..4]),
            "run {run}: nonce {:?} does not match the packet's header {:02x?}",
            NonceParts(nonce),
            &datagram[..12]
        );
        // A receiver-side endpoint of its own per datagram: no replay window, so every
        // datagram, a retransmission included, is authenticated in full.
        let opened = Endpoint::new(
            self.key.clone(),
            Direction::ReceiverToSender,
            SessionSalt::new([0xA5; 8]),
        )
        .open(Instant::now(), datagram)
        .unwrap_or_else(|e| {
            panic!(
                "run {run}: a datagram ({:?}) does not authenticate under the key: {e}",
                NonceParts(nonce)
            )
        });
        assert_eq!(
            classify(&opened.plain),
            classify(datagram),
            "run {run}: the opened packet is not of the sealed one's kind"
        );
        match self.salts[run] {
            None => {
                if let Some(earlier) = self.salts.iter().position(|s| *s == Some(salt)) {
                    panic!("run {run} has the session salt of run {earlier}: {salt:?}");
                }
                self.salts[run] = Some(salt);
            }
            Some(s) => assert_eq!(s, salt, "run {run}: two session salts in one run"),
        }
        let counts = &mut self.counts[run];
        match self.nonces.get(&(salt, nonce)) {
            Some((_, bytes)) if bytes[..] == datagram[..] => {
                counts.retransmissions += 1;
                return Seen::Retransmission;
            }
            Some((first_run, bytes)) => panic!(
                "nonce reuse: run {run} sealed {} bytes under salt {salt:?} and nonce {:?}, \
                 which run {first_run} used for {} other bytes",
                datagram.len(),
                NonceParts(nonce),
                bytes.len()
            ),
            None => {}
        }
        self.nonces.insert((salt, nonce), (run, datagram.to_vec()));
        match classify(datagram) {
            // Media and repair streams: even and odd SSRCs (keymash-transport's StreamIds).
            DatagramKind::Rtp if nonce[3] & 1 == 0 => {
                counts.media += 1;
                Seen::Media(u64::from_be_bytes([
                    0, nonce[5], nonce[6], nonce[7], nonce[8], nonce[9], nonce[10], nonce[11],
                ]))
            }
            DatagramKind::Rtp => {
                counts.repair += 1;
                Seen::Repair
            }
            DatagramKind::Rtcp => {
                counts.rtcp += 1;
                Seen::Rtcp
            }
            DatagramKind::Other => unreachable!("sealed_identity accepted it"),
        }
    }
}

#[test]
fn a_sender_restarted_100_times_under_one_key_never_repeats_a_nonce() {
    let started = Instant::now();
    let mut pipeline = SenderPipeline::new(
        "nonce-restarts",
        320,
        240,
        30,
        0.0,
        "[transport]\nfec_overhead_percent = 25\nnack = true\n",
    );
    let settings = transport_settings(&pipeline.config).expect("transport settings");
    assert!(
        matches!(
            settings.security,
            keymash_transport::Protection::PreShared(_)
        ),
        "the test configuration must protect the link"
    );
    let key = pipeline
        .config
        .load_key()
        .expect("the test key file")
        .expect("security.mode = \"psk\"");
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, pipeline.video_port));
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, pipeline.sender_port));
    let mut socket = PeerSocket::bind(local, peer, SocketBuffers::default())
        .expect("bind the receiver's address of the configuration");
    for service in ["capture", "delay-buffer", "encoder"] {
        pipeline.start(service);
    }

    let mut ledger = Ledger {
        key,
        nonces: HashMap::new(),
        salts: vec![None; RUNS],
        counts: vec![Counts::default(); RUNS],
    };
    let mut buf = vec![0u8; RECV_BUFFER_LEN];
    for run in 0..RUNS {
        pipeline.start("net-tx");
        // A new receiver session per run, as if net-rx restarted too: it confirms the new
        // sender session at once, without waiting out the old stream.
        let salt = SessionSalt::new(keymash_service::random::bytes().expect("random salt"));
        let seed = u64::from_le_bytes(keymash_service::random::bytes().expect("random seed"));
        let mut receiver = Receiver::with_salt(settings.clone(), seed, salt, Instant::now())
            .expect("test receiver");
        let deadline = Instant::now() + RUN_DEADLINE;
        while !ledger.counts[run].enough() {
            assert!(
                Instant::now() < deadline,
                "run {run}: net-tx did not send {MEDIA_PER_RUN} media, {REPAIR_PER_RUN} repair and \
                 {RTCP_PER_RUN} RTCP packets and a retransmission (or {MEDIA_WITHOUT_RETRANSMISSION} \
                 media packets) within {RUN_DEADLINE:?} ({:?}); its log:\n{}",
                ledger.counts[run],
                pipeline.log("net-tx")
            );
            if let Some(len) = socket
                .recv(&mut buf, Duration::from_millis(2))
                .expect("receive")
            {
                let withhold = match ledger.record(run, &buf[..len]) {
                    Seen::Media(counter) => counter % WITHHOLD_EVERY == 0,
                    Seen::Repair => true,
                    Seen::Rtcp | Seen::Retransmission => false,
                };
                if !withhold {
                    receiver.handle_datagram(Instant::now(), &buf[..len]);
                }
            }
            let now = Instant::now();
            receiver.handle_timeout(now);
            while receiver.poll_payload(now).is_some() {}
            while let Some(transmit) = receiver.poll_transmit(now) {
                let _ = socket.send(&transmit);
            }
        }
        pipeline.kill_hard("net-tx");
        // What it sent before it died is in the socket's queue now (loopback delivers at once):
        // this run's too.
        while let Some(len) = socket.recv(&mut buf, Duration::ZERO).expect("receive") {
            ledger.record(run, &buf[..len]);
        }
    }

    let salts: HashSet<SessionSalt> = ledger.salts.iter().map(|s| s.expect("salt")).collect();
    assert_eq!(salts.len(), RUNS, "every run has a salt of its own");
    let total = ledger.counts.iter().fold(Counts::default(), |a, c| Counts {
        media: a.media + c.media,
        repair: a.repair + c.repair,
        rtcp: a.rtcp + c.rtcp,
        retransmissions: a.retransmissions + c.retransmissions,
    });
    assert_eq!(
        ledger.nonces.len(),
        total.media + total.repair + total.rtcp,
        "one nonce per packet"
    );
    // The allowance for identical bytes was used: retransmissions happened and were identical.
    assert!(
        total.retransmissions > 0,
        "no retransmission in {RUNS} runs: the NACK path was not exercised ({total:?})"
    );
    println!(
        "{RUNS} starts of net-tx in {:.1} s: {} distinct (salt, nonce) pairs ({} media, {} repair, \
         {} RTCP), {} retransmissions with identical bytes, no nonce reused",
        started.elapsed().as_secs_f64(),
        ledger.nonces.len(),
        total.media,
        total.repair,
        total.rtcp,
        total.retransmissions
    );
}
