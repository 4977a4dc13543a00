//! The whole path in memory, from the encoder's choice of frame to the display's, over a seeded
//! lossy link on a virtual clock (issue 13): no shared memory, no sockets, no threads, no sleeps.
//!
//! Every stage is the library code its service wires up, called in the service's order:
//!
//! - camera: [`SyntheticScene`] renders frame `k` at its capture time into a small stand-in for
//!   the delayed-frame ring ([`RING_SLOTS`] slots, lapped like the shared-memory ring);
//! - encoder: [`NewestFrame::pick`] chooses the frame, the quality comes from the
//!   [`QualityRecord`] net-tx wrote, [`Encoder`] codes it and [`pack_payloads`] frames it as a
//!   payload-ring slot described by a [`PayloadSlot`];
//! - net-tx: [`PackedPayloads`] unframes it, [`Sender`] seals and paces it (pre-shared key),
//!   [`Departures`] notes when each frame's last packet left, and the receiver's feedback sets
//!   the quality record;
//! - link: a fixed latency each way; the forward direction drops datagrams with a seeded
//!   probability (the exhibit's eBPF filter sits at the receiver's ingress), the feedback
//!   direction is lossless;
//! - net-rx: [`Receiver`] opens and orders the packets, [`FrameJoin`] starts on a whole frame,
//!   each payload is described by a [`ReceivedSlot`], and [`Receiver::set_feedback`] carries one
//!   quality change mid-run (with [`Receiver::feedback_now`], as the design asks of a mash change);
//! - display: [`PlayoutQueue`] releases frames, a persistent [`Decoder`] draws them, and the
//!   stamp in the picture ([`read_stamp`]) says which frame the screen shows.
//!
//! The encoder is held up once (as a descheduled process would be) for long enough that the
//! ring laps it, so the newest-frame decision skips frames. Two configurations run: the
//! exhibit's raw loss (glitches: frames shown with stale blocks) and NACK (every loss the
//! receiver can see is repaired in time, so every frame is shown whole). Each runs twice with the
//! same seed and must come out identical.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use keymash_codec::bitio::BitReader;
use keymash_codec::block::{read_macroblock, DecodedMacroblock, PredictionState, QuantTables};
use keymash_codec::frame::{psnr_from_squared_error, squared_error};
use keymash_codec::payload::HEADER_LEN;
use keymash_codec::{
    Decoder, Encoder, EncoderConfig, FrameGeometry, FrameJoin, I420Frame, PayloadHeader,
    PayloadSink, QualitySpec,
};
use keymash_core::key::PreSharedKey;
use keymash_core::rng::SplitMix64;
use keymash_core::{FrameNo, MashLevel, Quality};
use keymash_media::stamp::{read_stamp, Stamp};
use keymash_media::{Departed, Departures, NewestFrame, SyntheticScene};
use keymash_pipeline::{
    pack_payloads, Arrived, FrameKind, PackedPayloads, PayloadSlot, QualityRecord, ReceivedSlot,
};
use keymash_present::{PayloadTiming, PlayoutBounds, PlayoutQueue};
use keymash_transport::rtp::{classify, DatagramKind, RtpPacket};
use keymash_transport::{Protection, Receiver, Recovery, Sender, TransmitKind, TransportConfig};

const WIDTH: usize = 320;
const HEIGHT: usize = 240;
/// Frames the camera captures.
const FRAMES: u64 = 60;
/// Datagrams the forward link drops, as a probability.
const LOSS: f64 = 0.10;
/// One-way latency of either direction.
const LATENCY: Duration = Duration::from_millis(10);
const SEED: u64 = 0x6b65_796d_6173_6813;
/// Virtual time before the first capture: the protected sessions confirm each other and the
/// receiver's first quality request reaches net-tx (several sender-report rounds, even if the
/// link drops some of them).
const WARM_UP: Duration = Duration::from_secs(1);
/// Virtual time after the last capture: every timer (gap hold, NACK deadline, playout) runs out.
const DRAIN: Duration = Duration::from_secs(1);
/// Slots of the stand-in delayed-frame ring.
const RING_SLOTS: u64 = 4;
/// The encoder is held up after encoding the frame before this one...
const STALL_FROM: u64 = 40;
/// ...until half a frame interval after this frame's capture. The ring holds frames 42..=45
/// then (40 and 41 lapped), and the encoder takes the newest, 45: frames 40..=44 are skipped.
const STALL_WAKE_AFTER: u64 = 45;
/// The receiver asks for this quality from the start...
const QUALITY_BEFORE: u8 = 30;
/// ...and for this one from half a frame interval before this frame's capture.
const QUALITY_AFTER: u8 = 80;
const CHANGE_BEFORE_FRAME: u64 = 30;
/// A mash change sent at once reaches the encoder within this many frame intervals (one
/// feedback trip of [`LATENCY`], then the next frame).
const MAX_QUALITY_LAG_FRAMES: u32 = 2;
/// The display's playout bounds: `display.playout_min_ms` and `playout_max_ms`'s defaults.
fn playout_bounds() -> PlayoutBounds {
    let display = keymash_core::config::DisplayConfig::default();
    PlayoutBounds::from_ms(display.playout_min_ms, display.playout_max_ms)
}
/// Virtual CLOCK_MONOTONIC at the start of a run, so capture times look like a real clock's.
const CLOCK_BASE_NS: u64 = 7_000_000_000_000;
/// The pre-shared key both ends were given.
const KEY: [u8; 32] = [0x4b; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repair {
    /// The exhibit's default: FEC and NACK off, loss shows on screen.
    None,
    Nack,
}

/// One direction of the network: fixed latency, seeded independent loss, no reordering.
struct Link {
    loss: f64,
    rng: SplitMix64,
    in_flight: VecDeque<(Instant, Vec<u8>)>,
}

impl Link {
    fn new(loss: f64, seed: u64) -> Self {
        Link {
            loss,
            rng: SplitMix64::new(seed),
            in_flight: VecDeque::new(),
        }
    }

    /// Puts `datagram` on the link at `now`; false if the link dropped it.
    fn send(&mut self, now: Instant, datagram: Vec<u8>) -> bool {
        let draw = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        if draw < self.loss {
            return false;
        }
        self.in_flight.push_back((now + LATENCY, datagram));
        true
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.front().map(|(at, _)| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_arrival()? <= now {
            self.in_flight.pop_front().map(|(_, d)| d)
        } else {
            None
        }
    }
}

/// What the sending side did with one frame.
#[derive(Debug, Clone, PartialEq)]
struct SentFrame {
    capture_ns: u64,
    /// Virtual time since the start when the encoder took it.
    encoded_at: Duration,
    quality: u8,
    /// Its media packets' extended sequence numbers.
    seqs: std::ops::RangeInclusive<u64>,
    /// The picture its payloads decode to on their own, and how close that is to the source.
    picture: u64,
    psnr_db: f64,
    /// When its last media packet left net-tx ([`Departures`]).
    departed_at: Option<Duration>,
}

/// A frame the display took from the playout queue and drew.
#[derive(Debug, Clone, PartialEq)]
struct Presented {
    frame: u64,
    at: Duration,
    complete: bool,
    payloads: usize,
    /// Payloads of it that came back after a NACK.
    resent: usize,
    /// The quality written in its payloads' macroblocks, as received.
    wire_qualities: BTreeSet<u8>,
    /// The stamp the screen shows after drawing it.
    stamp: Option<Stamp>,
    picture: u64,
}

/// Everything a run produced; two runs with one seed must be equal.
#[derive(Debug, PartialEq)]
struct Outcome {
    sent: BTreeMap<u64, SentFrame>,
    /// Frames the encoder passed over, as [`NewestFrame`] counted them.
    skipped: u64,
    /// Media packets whose first transmission the link dropped / delivered.
    media_dropped: BTreeSet<u64>,
    media_delivered: BTreeSet<u64>,
    /// Retransmissions the link dropped / delivered.
    resent_dropped: u64,
    resent_delivered: BTreeSet<u64>,
    presented: Vec<Presented>,
    /// When the receiver was asked for the new quality.
    change_at: Duration,
    receiver: keymash_transport::ReceiverStats,
    /// The receiver's `unconfirmed` count when the first frame was captured.
    unconfirmed_before_stream: u64,
    sender: keymash_transport::SenderStats,
    playout: keymash_present::PlayoutStats,
    joined_mid_frame: u64,
    security_alarm: bool,
    /// Loop turns of the virtual clock.
    turns: u64,
}

fn interval() -> Duration {
    TransportConfig::default().frame_interval
}

fn capture_offset(frame: u64) -> Duration {
    WARM_UP + interval() * frame as u32
}

fn hash_picture(picture: &I420Frame) -> u64 {
    let mut h = DefaultHasher::new();
    (picture.y(), picture.u(), picture.v()).hash(&mut h);
    h.finish()
}

fn psnr_db(a: &I420Frame, b: &I420Frame) -> f64 {
    let e = squared_error(a.y(), b.y()) + squared_error(a.u(), b.u()) + squared_error(a.v(), b.v());
    psnr_from_squared_error(e, (a.y().len() + a.u().len() + a.v().len()) as u64)
}

/// The quality of a payload's first macroblock, read from its bits as a decoder reads it.
fn wire_quality(tables: &QuantTables, payload: &[u8]) -> u8 {
    let mut reader = BitReader::new(&payload[HEADER_LEN..]);
    let mut mb = DecodedMacroblock::default();
    read_macroblock(
        &mut reader,
        tables,
        &mut PredictionState::default(),
        &mut mb,
    )
    .expect("an authenticated payload's first macroblock reads");
    mb.quality.get()
}

/// The extended sequence number of a media datagram on the link (headers travel in the clear).
fn media_seq(datagram: &[u8], wire_to_seq: &HashMap<u16, u64>) -> u64 {
    assert_eq!(classify(datagram), DatagramKind::Rtp);
    let packet = RtpPacket::parse(datagram).expect("the sender's RTP parses");
    *wire_to_seq
        .get(&packet.seq)
        .expect("a media packet of a frame the sender queued")
}

/// Runs the whole path once; see the module documentation.
fn run(repair: Repair, seed: u64) -> Outcome {
    let geometry = FrameGeometry::new(WIDTH, HEIGHT).expect("320x240");
    let config = TransportConfig {
        nack: repair == Repair::Nack,
        security: Protection::PreShared(PreSharedKey::from_bytes(KEY)),
        ..TransportConfig::default()
    };
    let interval = config.frame_interval;
    let quality_before = Quality::new(QUALITY_BEFORE).expect("valid");
    let quality_after = Quality::new(QUALITY_AFTER).expect("valid");

    let start = Instant::now();
    let clock_ns = |t: Instant| CLOCK_BASE_NS + (t - start).as_nanos() as u64;
    let instant_of = |ns: u64| start + Duration::from_nanos(ns - CLOCK_BASE_NS);
    let capture_at = |frame: u64| start + capture_offset(frame);
    let change_at = capture_at(CHANGE_BEFORE_FRAME) - interval / 2;
    let end = capture_at(FRAMES - 1) + DRAIN;

    // Camera and the delayed-frame ring: slot `seq % RING_SLOTS` holds frame `seq`.
    let mut scene = SyntheticScene::new(geometry, seed);
    let mut ring: Vec<(FrameNo, u64, I420Frame)> = (0..RING_SLOTS)
        .map(|_| (FrameNo(u64::MAX), 0, I420Frame::grey(geometry)))
        .collect();
    let mut write_seq = 0u64;
    // Encoder.
    let mut encoder = Encoder::new(EncoderConfig::new(geometry)).expect("encoder");
    let mut sink = PayloadSink::new();
    let mut reference = Decoder::new(geometry);
    let mut read_seq = 0u64;
    let mut encoder_wakes = start;
    let mut skipped = 0u64;
    let mut payload_ring: VecDeque<(keymash_shm::FrameMeta, Vec<u8>)> = VecDeque::new();
    // net-tx.
    let mut sender = Sender::new(config.clone(), seed, start).expect("sender");
    let mut departures = Departures::new();
    let mut wire_to_seq: HashMap<u16, u64> = HashMap::new();
    // The link.
    let mut forward = Link::new(LOSS, seed ^ 0xF0F0);
    let mut back = Link::new(0.0, seed ^ 0x0F0F);
    // net-rx.
    let mut receiver = Receiver::new(config.clone(), seed.wrapping_add(1), start).expect("rx");
    receiver.set_feedback(quality_before, MashLevel::IDLE);
    let mut join = FrameJoin::new();
    let tables = QuantTables::new();
    let mut changed = false;
    // display.
    let mut playout = PlayoutQueue::new(playout_bounds(), interval);
    let mut screen = Decoder::new(geometry);

    let mut out = Outcome {
        sent: BTreeMap::new(),
        skipped: 0,
        media_dropped: BTreeSet::new(),
        media_delivered: BTreeSet::new(),
        resent_dropped: 0,
        resent_delivered: BTreeSet::new(),
        presented: Vec::new(),
        change_at: change_at - start,
        receiver: Default::default(),
        unconfirmed_before_stream: 0,
        sender: Default::default(),
        playout: Default::default(),
        joined_mid_frame: 0,
        security_alarm: false,
        turns: 0,
    };
    // By frame, at the display: the qualities in its payloads' bits, and how many were resent.
    let mut wire: HashMap<u64, (BTreeSet<u8>, usize)> = HashMap::new();

    let mut now = start;
    loop {
        out.turns += 1;
        assert!(out.turns < 100_000, "the virtual clock is stuck at {now:?}");

        // Camera.
        while write_seq < FRAMES && now >= capture_at(write_seq) {
            if write_seq == 0 {
                out.unconfirmed_before_stream = receiver.stats(now).unconfirmed;
            }
            let capture_ns = clock_ns(capture_at(write_seq));
            let slot = &mut ring[(write_seq % RING_SLOTS) as usize];
            assert!(scene.render(FrameNo(write_seq), capture_ns, &mut slot.2));
            (slot.0, slot.1) = (FrameNo(write_seq), capture_ns);
            write_seq += 1;
        }

        // net-tx, part 1: feedback in, the quality cell out.
        while let Some(d) = back.pop_due(now) {
            sender.handle_datagram(now, &d);
        }
        let quality_cell = QualityRecord::new(
            sender.requested_quality(now),
            sender.remote_mash(now).is_some(),
            clock_ns(now),
        );

        // Encoder: the newest frame the ring still holds, at the quality in the cell.
        if now >= encoder_wakes && read_seq < write_seq {
            let arrived = read_seq.max(write_seq.saturating_sub(RING_SLOTS));
            let pick = NewestFrame::pick(arrived, arrived - read_seq, write_seq);
            skipped += pick.skipped;
            read_seq = pick.seq + 1;
            let (frame, capture_ns, picture) = &ring[(pick.seq % RING_SLOTS) as usize];
            assert_eq!(frame.0, pick.seq, "the ring slot holds the frame picked");
            let quality = quality_cell.quality().unwrap_or(config.fallback_quality);
            encoder
                .encode(
                    *frame,
                    picture.view(),
                    QualitySpec::Uniform(quality),
                    &mut sink,
                )
                .expect("encode");
            // What these payloads decode to on their own: an intra frame covers every block.
            for p in sink.iter() {
                reference.apply(p).expect("fresh payloads decode");
            }
            let mut slot = vec![0u8; 2 * WIDTH * HEIGHT];
            let len = pack_payloads(sink.iter(), &mut slot).expect("the frame fits a slot");
            slot.truncate(len);
            let desc = PayloadSlot {
                frame: *frame,
                capture_ns: *capture_ns,
                kind: FrameKind::Video,
            };
            payload_ring.push_back((desc.meta(), slot));
            out.sent.insert(
                frame.0,
                SentFrame {
                    capture_ns: *capture_ns,
                    encoded_at: now - start,
                    quality: quality.get(),
                    seqs: 0..=0,
                    picture: hash_picture(reference.frame()),
                    psnr_db: psnr_db(reference.frame(), picture),
                    departed_at: None,
                },
            );
            if read_seq == STALL_FROM {
                encoder_wakes = capture_at(STALL_WAKE_AFTER) + interval / 2;
            }
        }

        // net-tx, part 2: frames from the payload ring into the transport, packets out.
        while let Some((meta, slot)) = payload_ring.pop_front() {
            let desc = PayloadSlot::read(&meta);
            let packed = PackedPayloads::parse(&slot).expect("a whole slot");
            let queued = sender
                .push_frame(
                    now,
                    desc.frame,
                    instant_of(desc.capture_ns),
                    &packed.payloads,
                )
                .expect("frame queued");
            departures.queued(
                queued.last_seq.wire(),
                Departed {
                    capture_ns: desc.capture_ns,
                    queued_ns: clock_ns(now),
                },
            );
            for seq in queued.first_seq.get()..=queued.last_seq.get() {
                assert!(wire_to_seq.insert(seq as u16, seq).is_none(), "no wrap");
            }
            let sent = out.sent.get_mut(&desc.frame.0).expect("encoded");
            sent.seqs = queued.first_seq.get()..=queued.last_seq.get();
        }
        while let Some(t) = sender.poll_transmit(now) {
            let seq = matches!(t.kind, TransmitKind::Media | TransmitKind::Retransmission)
                .then(|| media_seq(&t.contents, &wire_to_seq));
            if let (TransmitKind::Media, Some(seq)) = (t.kind, seq) {
                if let Some(departed) = departures.sent(seq as u16) {
                    let frame = out
                        .sent
                        .values_mut()
                        .find(|f| f.capture_ns == departed.capture_ns)
                        .expect("a frame departs once it was queued");
                    assert_eq!(frame.departed_at, None, "a frame departs once");
                    frame.departed_at = Some(now - start);
                }
            }
            let delivered = forward.send(now, t.contents);
            match (t.kind, seq, delivered) {
                (TransmitKind::Media, Some(s), true) => {
                    out.media_delivered.insert(s);
                }
                (TransmitKind::Media, Some(s), false) => {
                    out.media_dropped.insert(s);
                }
                (TransmitKind::Retransmission, Some(s), true) => {
                    out.resent_delivered.insert(s);
                }
                (TransmitKind::Retransmission, Some(_), false) => out.resent_dropped += 1,
                _ => {}
            }
        }

        // net-rx: datagrams in, payloads out from the first whole frame on.
        while let Some(d) = forward.pop_due(now) {
            receiver.handle_datagram(now, &d);
        }
        while let Some(p) = receiver.poll_payload(now) {
            let header = PayloadHeader::parse(&p.payload).expect("authenticated payloads parse");
            if !join.admit(u64::from(p.ssrc.0), &header) {
                continue;
            }
            let slot = ReceivedSlot {
                frame: header.frame_no,
                arrival_ns: clock_ns(now),
                arrived: match p.recovery {
                    Recovery::Direct => Arrived::Direct,
                    Recovery::Fec => Arrived::Fec,
                    Recovery::Nack => Arrived::Nack,
                },
                rtp_timestamp: Some(p.rtp_timestamp),
                camera: None,
            };
            // display's side of the received ring.
            let slot = ReceivedSlot::read(&slot.meta());
            let entry = wire.entry(slot.frame.0).or_default();
            entry.0.insert(wire_quality(&tables, &p.payload));
            entry.1 += usize::from(slot.arrived == Arrived::Nack);
            // Late payloads are refused and counted in the playout statistics.
            let timing = PayloadTiming {
                rtp_timestamp: slot.rtp_timestamp,
                age: None,
            };
            let _ = playout.push_timed(instant_of(slot.arrival_ns), p.payload, timing);
        }
        if !changed && now >= change_at {
            changed = true;
            receiver.set_feedback(quality_after, MashLevel::FULL);
            receiver.feedback_now(now);
        }
        while let Some(t) = receiver.poll_transmit(now) {
            assert!(back.send(now, t.contents), "feedback is never dropped");
        }

        // display.
        while let Some(frame) = playout.pop_due(now) {
            for p in &frame.payloads {
                screen.apply(p).expect("authenticated payloads decode");
            }
            let (wire_qualities, resent) = wire.remove(&frame.frame.0).unwrap_or_default();
            out.presented.push(Presented {
                frame: frame.frame.0,
                at: now - start,
                complete: frame.is_complete(),
                payloads: frame.payloads.len(),
                resent,
                wire_qualities,
                stamp: read_stamp(screen.frame()),
                picture: hash_picture(screen.frame()),
            });
        }

        // The next thing anything has to do.
        let playout_due = playout
            .next_due()
            .map(|due| if due > now { due } else { due + interval });
        let next = [
            (write_seq < FRAMES).then(|| capture_at(write_seq)),
            (read_seq < write_seq).then_some(encoder_wakes),
            sender.poll_timeout(),
            receiver.poll_timeout(),
            forward.next_arrival(),
            back.next_arrival(),
            playout_due,
            (!changed).then_some(change_at),
        ]
        .into_iter()
        .flatten()
        .filter(|&t| t > now)
        .min();
        match next {
            Some(t) if t <= end => now = t,
            _ => break,
        }
    }

    out.skipped = skipped;
    out.receiver = receiver.stats(now);
    out.sender = sender.stats().clone();
    out.playout = playout.stats();
    out.joined_mid_frame = join.skipped();
    out.security_alarm =
        receiver.security_alarm(now).is_some() || sender.security_alarm(now).is_some();
    out
}

/// What holds whatever the repair configuration.
fn assert_whole_path(out: &Outcome, repair: Repair) {
    let interval = interval();
    let spread = TransportConfig::default().frame_spread;

    // Encoder decision: the stall cost exactly the frames the ring lapped or the newest-frame
    // rule passed over, and nothing else.
    let encoded: BTreeSet<u64> = out.sent.keys().copied().collect();
    let expected: BTreeSet<u64> = (0..FRAMES)
        .filter(|f| !(STALL_FROM..STALL_WAKE_AFTER).contains(f))
        .collect();
    assert_eq!(encoded, expected, "frames encoded");
    assert_eq!(out.skipped, STALL_WAKE_AFTER - STALL_FROM, "frames skipped");

    // net-tx: every frame left, in order, its last packet within the pacing spread of being
    // encoded (encoding takes no virtual time).
    let mut last_departure = Duration::ZERO;
    for (f, sent) in &out.sent {
        let departed = sent
            .departed_at
            .unwrap_or_else(|| panic!("frame {f} never departed"));
        assert!(departed > last_departure, "frame {f} departed out of order");
        assert!(
            departed - sent.encoded_at <= spread,
            "frame {f} took {:?} to leave",
            departed - sent.encoded_at
        );
        last_departure = departed;
    }
    assert_eq!(out.sender.frames, encoded.len() as u64);
    assert_eq!(out.sender.send_queue_dropped, 0);

    // Quality: the receiver's first request was in force from the first frame on, the change
    // reached the encoder within the bound, and every later frame used it.
    let change_at = out.change_at;
    let first_after = out
        .sent
        .iter()
        .find(|(_, s)| s.quality == QUALITY_AFTER)
        .map(|(f, s)| (*f, s.encoded_at))
        .expect("the new quality reached the encoder");
    for (f, s) in &out.sent {
        let want = if *f < first_after.0 {
            QUALITY_BEFORE
        } else {
            QUALITY_AFTER
        };
        assert_eq!(
            s.quality, want,
            "frame {f} encoded at quality {}",
            s.quality
        );
    }
    let lag = first_after
        .1
        .checked_sub(change_at)
        .expect("the new quality was used before the receiver asked for it");
    eprintln!(
        "{repair:?}: quality change reached the encoder with frame {} after {:.1} ms",
        first_after.0,
        lag.as_secs_f64() * 1e3
    );
    assert!(
        lag <= interval * MAX_QUALITY_LAG_FRAMES,
        "quality change took {lag:?}"
    );
    let mean_psnr = |q: u8| {
        let v: Vec<f64> = out
            .sent
            .values()
            .filter(|s| s.quality == q)
            .map(|s| s.psnr_db)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (before, after) = (mean_psnr(QUALITY_BEFORE), mean_psnr(QUALITY_AFTER));
    eprintln!("{repair:?}: PSNR {before:.1} dB at quality {QUALITY_BEFORE}, {after:.1} dB at {QUALITY_AFTER}");
    assert!(
        after > before + 3.0,
        "quality {QUALITY_AFTER} is not clearer"
    );

    // Display: frames in increasing order, none of those never encoded, each whole frame shown
    // exactly as encoded, with its own stamp; a frame with blocks missing never shows a stamp
    // of a frame not yet shown.
    let mut shown_before: BTreeSet<u64> = BTreeSet::new();
    let mut last = None;
    for p in &out.presented {
        assert!(
            last < Some(p.frame),
            "frame {} shown after {last:?}",
            p.frame
        );
        last = Some(p.frame);
        let sent = &out.sent[&p.frame];
        assert_eq!(
            p.wire_qualities,
            BTreeSet::from([sent.quality]),
            "frame {}: quality on the wire",
            p.frame
        );
        if p.complete {
            assert_eq!(
                p.picture, sent.picture,
                "frame {} drawn differently",
                p.frame
            );
            assert_eq!(
                p.stamp,
                Some(Stamp::new(FrameNo(p.frame), sent.capture_ns)),
                "frame {} shows the wrong stamp",
                p.frame
            );
        } else if let Some(stamp) = p.stamp {
            // The blocks under the stamp came with this frame, or are left from one shown
            // before: never a frame still to come, never a misread number.
            let own = stamp == Stamp::new(FrameNo(p.frame), sent.capture_ns);
            let earlier = out.sent.get(&u64::from(stamp.frame)).is_some_and(|s| {
                Stamp::new(FrameNo(u64::from(stamp.frame)), s.capture_ns) == stamp
            }) && shown_before.contains(&u64::from(stamp.frame));
            assert!(
                own || earlier,
                "incomplete frame {} shows stamp {stamp:?}",
                p.frame
            );
        }
        shown_before.insert(p.frame);
    }

    // A frame is shown whole exactly when all its packets reached the receiver, first time or
    // resent; it is shown at all when any did (the first frame only from its first payload on).
    let reached =
        |seq: &u64| out.media_delivered.contains(seq) || out.resent_delivered.contains(seq);
    let mut expect_shown = BTreeMap::new();
    for (f, sent) in &out.sent {
        let got = sent.seqs.clone().filter(reached).count();
        if got > 0 {
            expect_shown.insert(*f, got == sent.seqs.clone().count());
        }
    }
    if out.joined_mid_frame > 0 {
        let (first, _) = expect_shown.pop_first().expect("something arrived");
        assert!(
            !reached(out.sent[&first].seqs.start()),
            "joined frame {first} at its start"
        );
    }
    let shown: BTreeMap<u64, bool> = out
        .presented
        .iter()
        .map(|p| (p.frame, p.complete))
        .collect();
    assert_eq!(shown, expect_shown, "frames shown (whole or not)");
    assert_eq!(out.playout.frames_released, out.presented.len() as u64);
    assert_eq!(
        out.playout.frames_incomplete,
        out.presented.iter().filter(|p| !p.complete).count() as u64
    );
    assert_eq!(
        (
            out.playout.payloads_late,
            out.playout.frames_overflowed,
            out.playout.stream_restarts
        ),
        (0, 0, 0),
        "{:?}",
        out.playout
    );

    // Loss counters: the receiver counts as lost exactly the packets the link dropped that it
    // could notice (a later packet arrived) and that never came back; it received each packet
    // the link delivered once; the sender hears the same from the receiver reports.
    let highest = out
        .media_delivered
        .iter()
        .chain(&out.resent_delivered)
        .max()
        .copied()
        .expect("packets arrived");
    let lowest = *out.media_delivered.first().expect("packets arrived");
    let unrepaired = out
        .media_dropped
        .iter()
        .filter(|s| (lowest..=highest).contains(*s) && !out.resent_delivered.contains(s))
        .count() as u64;
    let r = &out.receiver;
    assert_eq!(r.lost, unrepaired, "{r:?}");
    assert_eq!(
        r.received,
        (out.media_delivered.len() + out.resent_delivered.len()) as u64,
        "{r:?}"
    );
    assert_eq!(r.recovered_nack, out.resent_delivered.len() as u64, "{r:?}");
    assert_eq!(
        i64::from(out.sender.remote_cumulative_lost),
        unrepaired as i64
    );
    assert_eq!(
        (r.late, r.duplicate, r.jumped, r.recovered_fec),
        (0, 0, 0, 0),
        "{r:?}"
    );
    assert_eq!(
        r.delivered, r.received,
        "every packet received was handed on: {r:?}"
    );
    let payloads_shown: usize = out.presented.iter().map(|p| p.payloads).sum();
    assert_eq!(
        payloads_shown as u64 + out.joined_mid_frame,
        r.delivered,
        "payloads handed on but not shown"
    );
    assert_eq!(
        out.presented.iter().map(|p| p.resent).sum::<usize>(),
        out.resent_delivered.len()
    );

    // Protection: nothing failed, and every media packet came after both sessions confirmed.
    assert_eq!((r.auth_failed, r.replayed), (0, 0), "{r:?}");
    assert_eq!(
        r.unconfirmed, out.unconfirmed_before_stream,
        "media arrived before the sessions were confirmed"
    );
    assert!(!out.security_alarm);
}

fn measured(repair: Repair) -> Outcome {
    let started = Instant::now();
    let out = run(repair, SEED);
    let again = run(repair, SEED);
    let took = started.elapsed();
    eprintln!(
        "{repair:?}: two runs of {FRAMES} frames {WIDTH}x{HEIGHT} took {:.0} ms ({} clock turns each); \
         {} of {} media packets dropped, {} frames shown, {} incomplete",
        took.as_secs_f64() * 1e3,
        out.turns,
        out.media_dropped.len(),
        out.media_dropped.len() + out.media_delivered.len(),
        out.presented.len(),
        out.playout.frames_incomplete,
    );
    eprintln!(
        "{repair:?}: receiver lost {}, recovered by NACK {}; sender resent {} ({} of them dropped)",
        out.receiver.lost,
        out.receiver.recovered_nack,
        out.sender.retransmitted,
        out.resent_dropped,
    );
    assert!(out == again, "the same seed gave different runs");
    out
}

#[test]
fn raw_loss_shows_as_glitches_and_is_counted_exactly() {
    let out = measured(Repair::None);
    assert_whole_path(&out, Repair::None);
    assert_eq!(out.sender.retransmitted, 0);
    assert_eq!(out.resent_delivered.len() + out.resent_dropped as usize, 0);
    assert!(
        out.media_dropped.len() * 100 > 5 * (out.media_dropped.len() + out.media_delivered.len()),
        "the link dropped too little to test anything"
    );
    assert!(out.playout.frames_incomplete > 0, "no glitch on screen");
    assert!(
        out.presented.iter().any(|p| p.complete),
        "no whole frame on screen"
    );
}

#[test]
fn with_nack_every_frame_is_shown_whole() {
    let out = measured(Repair::Nack);
    assert_whole_path(&out, Repair::Nack);
    // Every loss the receiver could notice was repaired in time for the screen.
    assert_eq!(out.receiver.lost, 0, "{:?}", out.receiver);
    let highest = *out.media_delivered.last().expect("packets arrived");
    let tail: Vec<u64> = out
        .media_dropped
        .iter()
        .copied()
        .filter(|s| *s > highest)
        .collect();
    let last_frame = out.sent.keys().max().copied().expect("frames");
    for p in &out.presented {
        assert!(
            p.complete || (p.frame == last_frame && !tail.is_empty()),
            "frame {} shown with blocks missing",
            p.frame
        );
    }
    assert_eq!(
        out.presented.len() as u64 + u64::from(out.joined_mid_frame > 0),
        out.sent.len() as u64,
        "every frame encoded was shown"
    );
    assert!(
        out.media_dropped.len() >= 20,
        "too little loss to test NACK"
    );
    assert_eq!(
        out.sender.retransmitted,
        out.resent_delivered.len() as u64 + out.resent_dropped,
    );
    assert_eq!(out.sender.nacks_received, out.receiver.nacks_sent);
}
