//! Quality follows mashing without waiting for the feedback tick (issue 16, item 1), measured in
//! memory on a virtual clock: no shared memory, sockets, threads or sleeps, so the figures are
//! the product's decisions and timers, not the machine's load.
//!
//! Every stage is the library code its service wires up, woken as the service wakes:
//!
//! - mash-input stores a [`MashRecord`] when the level changes (a key press publishes at once)
//!   and again every 10 ms (`input.publish_hz` 100);
//! - net-rx reads the cell every [`MASH_READ_INTERVAL`] with [`current_level`], maps it with the
//!   default [`QualityCurve`], hands it to [`Receiver::set_feedback`] and sends what
//!   [`Receiver::poll_transmit`] gives (a quality change at once: [`keymash_transport::QualityPush`]);
//! - the link: a LAN's latency each way, lossless; the pre-shared key protects both directions;
//! - net-tx wakes for a paced packet, a frame from the encoder, or after [`FEEDBACK_POLL`] at
//!   most; it then reads the feedback in its socket and stores [`Sender::requested_quality`] in
//!   the quality cell when it changed;
//! - the encoder takes each frame when it is captured (delay 0), reads the quality cell, codes
//!   the frame and hands the payloads to net-tx; the quality of each frame is read back from
//!   its payload's bits.
//!
//! The mash level jumps between two levels [`CHANGES`] times at seeded, irregular moments (so
//! every phase of every timer is met). Three configurations run: before issue 16 (the quality
//! waits for the periodic feedback, net-rx read the cell every 10 ms and net-tx its socket every
//! 5 ms), with the push alone, and as shipped. Each runs twice with one seed and must come out
//! identical.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use keymash_codec::{Encoder, EncoderConfig, FrameGeometry, I420Frame, PayloadSink, QualitySpec};
use keymash_core::config::QualityCurveConfig;
use keymash_core::curves::QualityCurve;
use keymash_core::key::PreSharedKey;
use keymash_core::rng::SplitMix64;
use keymash_core::{FrameNo, MashLevel, Quality};
use keymash_input::{current_level, MASH_READ_INTERVAL};
use keymash_pipeline::{MashRecord, QualityRecord};
use keymash_tests::sender::first_macroblock_quality;
use keymash_transport::udp::FEEDBACK_POLL;
use keymash_transport::{Protection, Receiver, Sender, TransportConfig};

/// One-way latency of the LAN between the PCs.
const LAN: Duration = Duration::from_micros(200);
/// Mash level changes measured.
const CHANGES: u32 = 60;
/// Virtual time before the first change: the sessions confirm each other and the first
/// quality request reaches net-tx.
const WARM_UP: Duration = Duration::from_secs(2);
/// Changes are this far apart at least (longer than the feedback interval, so each is measured
/// on its own), plus a seeded share of [`SPACING_JITTER`].
const SPACING: Duration = Duration::from_millis(250);
const SPACING_JITTER: Duration = Duration::from_millis(150);
/// mash-input's publish period at the default `input.publish_hz`.
const MASH_PUBLISH: Duration = Duration::from_millis(10);
/// The two mash levels alternated between (quiet and hard mashing).
const LEVELS: [f32; 2] = [0.1, 0.9];
const SEED: u64 = 0x6b65_796d_6173_6816;
const CLOCK_BASE_NS: u64 = 9_000_000_000_000;
const KEY: [u8; 32] = [0x16; 32];

/// The services' timing, as it was or is.
#[derive(Debug, Clone, Copy)]
struct Timing {
    name: &'static str,
    push: bool,
    mash_read: Duration,
    feedback_poll: Duration,
}

const BEFORE: Timing = Timing {
    name: "before (periodic feedback only, 10 ms mash read, 5 ms feedback poll)",
    push: false,
    mash_read: Duration::from_millis(10),
    feedback_poll: Duration::from_millis(5),
};
const PUSH_ONLY: Timing = Timing {
    name: "push only (10 ms mash read, 5 ms feedback poll)",
    push: true,
    mash_read: Duration::from_millis(10),
    feedback_poll: Duration::from_millis(5),
};
const SHIPPED: Timing = Timing {
    name: "as shipped",
    push: true,
    mash_read: MASH_READ_INTERVAL,
    feedback_poll: FEEDBACK_POLL,
};

/// One mash level change and when its quality got where.
#[derive(Debug, Clone, PartialEq)]
struct Change {
    /// Virtual time since the start when mash-input stored the new level.
    at: Duration,
    from: Quality,
    to: Quality,
    /// When net-tx stored the new quality in the quality cell.
    stored: Option<Duration>,
    /// The first frame coded at the new quality: its number and capture (= encode) time.
    first_frame: Option<(u64, Duration)>,
}

/// A frame as the encoder coded it.
#[derive(Debug, Clone, PartialEq)]
struct Coded {
    frame: u64,
    at: Duration,
    /// The quality read back from its first payload's bits.
    quality: u8,
}

#[derive(Debug, PartialEq)]
struct Outcome {
    changes: Vec<Change>,
    frames: Vec<Coded>,
    /// net-tx's stores of a new quality: (time, quality).
    stores: Vec<(Duration, Quality)>,
    feedback_sent: u64,
    turns: u64,
}

/// One direction of the LAN: fixed latency, no loss.
#[derive(Default)]
struct Link(VecDeque<(Instant, Vec<u8>)>);

impl Link {
    fn send(&mut self, now: Instant, datagram: Vec<u8>) {
        self.0.push_back((now + LAN, datagram));
    }
    fn next_arrival(&self) -> Option<Instant> {
        self.0.front().map(|(at, _)| *at)
    }
    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_arrival()? <= now {
            self.0.pop_front().map(|(_, d)| d)
        } else {
            None
        }
    }
}

fn run(timing: Timing, seed: u64) -> Outcome {
    let config = TransportConfig {
        push_quality_changes: timing.push,
        security: Protection::PreShared(PreSharedKey::from_bytes(KEY)),
        ..TransportConfig::default()
    };
    let interval = config.frame_interval;
    let curve = QualityCurve::from_config(&QualityCurveConfig::default());
    let geometry = FrameGeometry::new(64, 48).expect("64x48");
    let picture = I420Frame::grey(geometry);
    let mut rng = SplitMix64::new(seed);
    let mut below = |d: Duration| Duration::from_nanos(rng.next_u64() % d.as_nanos() as u64);

    let start = Instant::now();
    let since = |t: Instant| t - start;
    let clock_ns = |t: Instant| CLOCK_BASE_NS + (t - start).as_nanos() as u64;

    // The moments the level changes, and the services' phases against each other.
    let mut change_times = Vec::new();
    let mut t = start + WARM_UP;
    for _ in 0..CHANGES {
        t += SPACING + below(SPACING_JITTER);
        change_times.push(t);
    }
    let end = t + SPACING;
    let mut next_capture = start + below(interval);
    let mut next_mash_read = start + below(timing.mash_read);
    let mut next_publish = start + below(MASH_PUBLISH);

    // mash-input.
    let mut level_index = 0usize;
    let mut mash_cell: Option<MashRecord> = None;
    let mut pending_changes: VecDeque<Instant> = change_times.iter().copied().collect();
    // net-rx.
    let mut receiver = Receiver::new(config.clone(), seed ^ 1, start).expect("receiver");
    // net-tx.
    let mut sender = Sender::new(config.clone(), seed ^ 2, start).expect("sender");
    let mut net_tx_wake = start;
    let mut quality_cell: Option<QualityRecord> = None;
    let (mut forward, mut back) = (Link::default(), Link::default());
    // encoder.
    let mut encoder = Encoder::new(EncoderConfig::new(geometry)).expect("encoder");
    let mut sink = PayloadSink::new();
    let mut frame_no = 0u64;

    let mut out = Outcome {
        changes: Vec::new(),
        frames: Vec::new(),
        stores: Vec::new(),
        feedback_sent: 0,
        turns: 0,
    };
    let mut now = start;
    loop {
        out.turns += 1;
        assert!(
            out.turns < 1_000_000,
            "the virtual clock is stuck at {now:?}"
        );

        // mash-input: a change publishes at once, the level is refreshed every publish period.
        let changed = pending_changes.front().is_some_and(|&c| c <= now);
        if changed {
            pending_changes.pop_front();
            let level = |i: usize| MashLevel::new(LEVELS[i % 2]).expect("a level");
            out.changes.push(Change {
                at: since(now),
                from: curve.quality(level(level_index)),
                to: curve.quality(level(level_index + 1)),
                stored: None,
                first_frame: None,
            });
            level_index += 1;
        }
        if changed || now >= next_publish {
            let level = MashLevel::new(LEVELS[level_index % 2]).expect("a level");
            mash_cell = Some(MashRecord::new(level, 0, 0, clock_ns(now)));
            if now >= next_publish {
                next_publish += MASH_PUBLISH;
            }
        }

        // net-rx: packets in, the mash cell when due, feedback out.
        while let Some(d) = forward.pop_due(now) {
            receiver.handle_datagram(now, &d);
        }
        while receiver.poll_payload(now).is_some() {}
        if now >= next_mash_read {
            next_mash_read += timing.mash_read;
            let level = mash_cell.map_or(MashLevel::IDLE, |r| current_level(&r, clock_ns(now)));
            receiver.set_feedback(curve.quality(level), level);
        }
        while let Some(t) = receiver.poll_transmit(now) {
            back.send(now, t.contents);
        }

        // The encoder: the frame captured now, at the quality in the cell, handed to net-tx
        // (which its arrival wakes).
        if now >= next_capture {
            next_capture += interval;
            let quality = quality_cell
                .and_then(|r| r.quality())
                .unwrap_or(config.fallback_quality);
            encoder
                .encode(
                    FrameNo(frame_no),
                    picture.view(),
                    QualitySpec::Uniform(quality),
                    &mut sink,
                )
                .expect("encode");
            let payloads: Vec<&[u8]> = sink.iter().collect();
            let coded = first_macroblock_quality(payloads[0]).expect("a macroblock's quality");
            sender
                .push_frame(now, FrameNo(frame_no), now, &payloads)
                .expect("frame queued");
            out.frames.push(Coded {
                frame: frame_no,
                at: since(now),
                quality: coded,
            });
            frame_no += 1;
            net_tx_wake = now;
        }

        // net-tx: feedback read when it wakes, the quality cell stored when it changed.
        if now >= net_tx_wake {
            while let Some(d) = back.pop_due(now) {
                sender.handle_datagram(now, &d);
            }
            let quality = sender.requested_quality(now);
            if quality_cell.and_then(|r| r.quality()) != Some(quality) {
                quality_cell = Some(QualityRecord::new(
                    quality,
                    sender.remote_mash(now).is_some(),
                    clock_ns(now),
                ));
                out.stores.push((since(now), quality));
            }
            while let Some(t) = sender.poll_transmit(now) {
                forward.send(now, t.contents);
            }
            net_tx_wake = sender
                .poll_timeout()
                .map_or(now + timing.feedback_poll, |t| {
                    t.min(now + timing.feedback_poll)
                })
                .max(now + Duration::from_nanos(1));
        }

        let next = [
            pending_changes.front().copied(),
            Some(next_publish),
            Some(next_mash_read),
            receiver.poll_timeout(),
            forward.next_arrival(),
            Some(next_capture),
            Some(net_tx_wake),
        ]
        .into_iter()
        .flatten()
        .map(|t| t.max(now + Duration::from_nanos(1)))
        .min();
        match next {
            Some(t) if t <= end => now = t,
            _ => break,
        }
    }

    // Where each change got to, before the next one.
    let bounds: Vec<Duration> = out
        .changes
        .iter()
        .map(|c| c.at)
        .skip(1)
        .chain([since(end)])
        .collect();
    for (c, until) in out.changes.iter_mut().zip(bounds) {
        c.stored = out
            .stores
            .iter()
            .find(|(t, q)| *t >= c.at && *t < until && *q == c.to)
            .map(|(t, _)| *t);
        c.first_frame = out
            .frames
            .iter()
            .find(|f| f.at >= c.at && f.at < until && f.quality == c.to.get())
            .map(|f| (f.frame, f.at));
    }
    out.feedback_sent = receiver.stats(now).feedback_sent;
    out
}

/// p50, p99 and max in milliseconds.
fn figures(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99), at(1.0))
}

/// Runs `timing` twice, checks what holds for any timing, prints the figures and returns the
/// lags (mash change to quality cell, mash change to the first frame at the new quality).
fn measured(timing: Timing) -> (Outcome, Vec<Duration>, Vec<Duration>) {
    let out = run(timing, SEED);
    assert!(
        out == run(timing, SEED),
        "the same seed gave different runs"
    );
    let (mut to_cell, mut to_frame) = (Vec::new(), Vec::new());
    for (i, c) in out.changes.iter().enumerate() {
        assert_ne!(c.from, c.to, "the levels must ask for different qualities");
        let stored = c
            .stored
            .unwrap_or_else(|| panic!("{}: change {i} never reached net-tx: {c:?}", timing.name));
        let (_, framed) = c
            .first_frame
            .unwrap_or_else(|| panic!("{}: change {i} never reached a frame: {c:?}", timing.name));
        // The encoder reads the cell for every frame: the first frame captured after the store
        // is at the new quality, and none before it. (A frame coded at the very moment of the
        // store went first: its arrival is what woke net-tx to read the feedback.)
        for f in &out.frames {
            if f.at > c.at && f.at < framed {
                assert_eq!(
                    f.quality,
                    c.from.get(),
                    "{}: frame {f:?} of {c:?}",
                    timing.name
                );
            }
        }
        assert!(
            framed >= stored && framed <= stored + TransportConfig::default().frame_interval,
            "{}: change {i} stored at {stored:?} but first coded at {framed:?}",
            timing.name
        );
        to_cell.push(stored - c.at);
        to_frame.push(framed - c.at);
    }
    let (c50, c99, cmax) = figures(to_cell.clone());
    let (f50, f99, fmax) = figures(to_frame.clone());
    eprintln!(
        "{}: {} changes, mash cell to quality cell p50 {c50:.1} ms p99 {c99:.1} max {cmax:.1}; \
         to the first frame at the new quality p50 {f50:.1} ms p99 {f99:.1} max {fmax:.1}; \
         {} feedback packets, {} clock turns",
        timing.name,
        out.changes.len(),
        out.feedback_sent,
        out.turns
    );
    (out, to_cell, to_frame)
}

#[test]
fn a_mash_change_reaches_the_encoder_without_waiting_for_the_feedback_tick() {
    let (_, before_cell, before_frame) = measured(BEFORE);
    let (_, _, _) = measured(PUSH_ONLY);
    let (out, cell, frame) = measured(SHIPPED);
    assert_eq!(out.changes.len(), CHANGES as usize);

    // Shipped: at most one mash read, the LAN, and one feedback poll from the store of the
    // level to the store of the quality; the very next frame carries it.
    let bound = MASH_READ_INTERVAL + LAN + FEEDBACK_POLL;
    let (_, _, cell_max) = figures(cell.clone());
    assert!(
        cell_max <= bound.as_secs_f64() * 1e3,
        "a change took {cell_max:.2} ms to reach the quality cell (bound {bound:?})"
    );
    let interval = TransportConfig::default().frame_interval;
    let (frame_p50, _, frame_max) = figures(frame);
    assert!(
        frame_max <= (bound + interval).as_secs_f64() * 1e3,
        "a change took {frame_max:.2} ms to reach a frame"
    );
    // Before, the periodic feedback was most of it: the same changes took several times longer.
    let (before_p50, _, _) = figures(before_cell);
    let (before_frame_p50, _, _) = figures(before_frame);
    assert!(
        before_p50 > 5.0 * bound.as_secs_f64() * 1e3,
        "before: p50 {before_p50:.1} ms to the quality cell; the comparison shows nothing"
    );
    assert!(
        frame_p50 + 20.0 < before_frame_p50,
        "to the first frame: p50 {frame_p50:.1} ms now, {before_frame_p50:.1} ms before"
    );
}
