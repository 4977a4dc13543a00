//! The cost of protection, beside a baseline from the same run: bytes added per packet and per
//! frame, and seal/open time per packet and per frame for a real 640x480 q90 frame (encoded by
//! keymash's codec from a synthetic picture with texture), next to a memcpy of the same bytes.
//!
//!     cargo bench -p keymash-transport --bench security
//!
//! Prints p50/p99/max over many repetitions, and the CPU share of one core at 30 fps for
//! sealing (net-tx) and opening (net-rx).

#[path = "../tests/support/security.rs"]
mod fixtures;
mod support;

use keymash_core::percentile::nearest_rank;
use std::hint::black_box;
use std::time::{Duration, Instant};

use fixtures::{endpoint, video_header};
use keymash_codec::{Encoder, EncoderConfig, FrameGeometry, I420Frame, PayloadSink, QualitySpec};
use keymash_core::{FrameNo, Quality};
use keymash_transport::rtp::Ssrc;
use keymash_transport::security::{Direction, RTCP_OVERHEAD, RTP_OVERHEAD};
use support::cpu_model;

/// What is timed, per packet and per frame, in the order printed.
const MEASURED: [&str; 3] = ["seal", "open", "memcpy (clone) baseline"];

/// A 640x480 picture with detail everywhere (a smooth gradient would make tiny frames).
fn picture() -> I420Frame {
    let g = FrameGeometry::new(640, 480).expect("geometry");
    let mut x = 0x1234_5678u32;
    let mut noise = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 48) as usize
    };
    let y = (0..640 * 480)
        .map(|i| ((i % 640) / 3 + (i / 640) / 4 + noise()) as u8)
        .collect();
    let u = (0..g.chroma_len())
        .map(|i| (100 + i % 40 + noise() / 4) as u8)
        .collect();
    let v = (0..g.chroma_len())
        .map(|i| (140 - i % 30 + noise() / 4) as u8)
        .collect();
    I420Frame::from_planes(g, y, u, v).expect("planes")
}

fn percentiles(mut d: Vec<Duration>) -> (Duration, Duration, Duration) {
    d.sort();
    let at = |q| nearest_rank(&d, q).unwrap_or_default();
    (at(0.5), at(0.99), at(1.0))
}

fn us(d: Duration) -> String {
    format!("{:.2} us", d.as_secs_f64() * 1e6)
}

/// "p50 .., p99 .., max .." of `samples`, and the p50.
fn summary(samples: Vec<Duration>) -> (String, Duration) {
    let (p50, p99, max) = percentiles(samples);
    (
        format!("p50 {}, p99 {}, max {}", us(p50), us(p99), us(max)),
        p50,
    )
}

fn main() {
    println!(
        "CPU: {}, {} threads available",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let g = FrameGeometry::new(640, 480).expect("geometry");
    let mut sink = PayloadSink::new();
    Encoder::new(EncoderConfig::new(g))
        .expect("encoder")
        .encode(
            FrameNo(1),
            picture().view(),
            QualitySpec::Uniform(Quality::saturating(90)),
            &mut sink,
        )
        .expect("encode");
    let payloads: Vec<Vec<u8>> = sink.iter().map(<[u8]>::to_vec).collect();
    let frame_bytes: usize = payloads.iter().map(Vec::len).sum();
    let packets: Vec<Vec<u8>> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| video_header(i as u16, Ssrc(2)).to_packet(p))
        .collect();
    let wire: usize = packets.iter().map(Vec::len).sum();
    println!(
        "640x480 q90 frame: {} payloads, {frame_bytes} payload bytes, {wire} RTP bytes; protection adds {RTP_OVERHEAD} B per RTP packet = {} B per frame ({:.2}%), {RTCP_OVERHEAD} B per RTCP compound (~10/s each way)",
        packets.len(),
        RTP_OVERHEAD * packets.len(),
        100.0 * (RTP_OVERHEAD * packets.len()) as f64 / wire as f64
    );

    let reps = 300;
    let (mut seal_frame, mut open_frame, mut copy_frame) = (Vec::new(), Vec::new(), Vec::new());
    let (mut seal_pkt, mut open_pkt, mut copy_pkt) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        // A new session per repetition (the counters only go up within one).
        let mut tx = endpoint(
            7,
            Direction::SenderToReceiver,
            (rep as u64 + 1).to_le_bytes(),
        );
        let mut rx = endpoint(7, Direction::ReceiverToSender, [0xEE; 8]);
        let mut sealed = Vec::with_capacity(packets.len());
        let t = Instant::now();
        for (i, p) in packets.iter().enumerate() {
            let t1 = Instant::now();
            let mut b = p.clone();
            tx.seal_rtp(&mut b, (1 << 16) | i as u64).expect("seal");
            seal_pkt.push(t1.elapsed());
            sealed.push(b);
        }
        seal_frame.push(t.elapsed());
        let t = Instant::now();
        for s in &sealed {
            let t1 = Instant::now();
            black_box(rx.open(t, s).expect("open"));
            open_pkt.push(t1.elapsed());
        }
        open_frame.push(t.elapsed());
        // Baseline: the copy each packet costs anyway (a clone of the same bytes).
        let t = Instant::now();
        for p in &packets {
            let t1 = Instant::now();
            black_box(p.clone());
            copy_pkt.push(t1.elapsed());
        }
        copy_frame.push(t.elapsed());
    }
    for (name, d) in MEASURED.into_iter().zip([seal_pkt, open_pkt, copy_pkt]) {
        let avg = wire / packets.len();
        println!("per packet ({avg} B avg) {name}: {}", summary(d).0);
    }
    for (name, d) in MEASURED
        .into_iter()
        .zip([seal_frame, open_frame, copy_frame])
    {
        let (text, p50) = summary(d);
        println!(
            "per frame {name}: {text}; at 30 fps {:.3}% of one core (p50)",
            p50.as_secs_f64() * 30.0 * 100.0
        );
    }
}
