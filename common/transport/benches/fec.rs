//! FEC measured: the XOR code against a Reed-Solomon (MDS) code at the same overhead on the
//! SAME loss pattern, and encode/decode throughput beside memcpy of the same bytes.
//!
//! `cargo bench -p keymash-transport --bench fec [-- FRAMES_OF_20]` (frames of 100 get a fifth).

mod support;

use std::hint::black_box;
use std::time::Instant;

use keymash_transport::fec::{
    block_rows, FecDecoder, FecEncoder, FecOverhead, RepairPacket, SplitMix64,
};
use keymash_transport::seq::SeqExtender;
use support::cpu_model;

/// Loss on the wire, packet by packet in sending order, continuing across frames.
enum Loss {
    Bernoulli(f64),
    /// Gilbert-Elliott: P(good->bad), P(bad->good); all lost in bad, none in good.
    GilbertElliott {
        to_bad: f64,
        to_good: f64,
        bad: bool,
    },
}

impl Loss {
    fn name(&self) -> String {
        match self {
            Loss::Bernoulli(p) => format!("random {:.0}%", p * 100.0),
            Loss::GilbertElliott {
                to_bad, to_good, ..
            } => {
                format!(
                    "G-E burst (p {to_bad}, r {to_good}: mean burst {:.1}, loss {:.1}%)",
                    1.0 / to_good,
                    100.0 * to_bad / (to_bad + to_good)
                )
            }
        }
    }

    fn lost(&mut self, rng: &mut SplitMix64) -> bool {
        let mut uniform = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        match self {
            Loss::Bernoulli(p) => uniform() < *p,
            Loss::GilbertElliott {
                to_bad,
                to_good,
                bad,
            } => {
                let flip = if *bad { *to_good } else { *to_bad };
                if uniform() < flip {
                    *bad = !*bad;
                }
                *bad
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    frames: u64,
    source_lost: u64,
    xor_recovered: u64,
    rs_recovered: u64,
    xor_complete: u64,
    rs_complete: u64,
    wire_lost: u64,
    wire_packets: u64,
}

fn payloads(rng: &mut SplitMix64, k: usize) -> Vec<Vec<u8>> {
    (0..k)
        .map(|_| {
            (0..600 + rng.below(589))
                .map(|_| rng.next_u64() as u8)
                .collect()
        })
        .collect()
}

/// Shards for Reed-Solomon: the same `length ++ bytes` coding, padded to one even length.
fn rs_shards(sources: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let longest = sources.iter().map(Vec::len).max().unwrap_or(0) + 2;
    let len = longest + longest % 2;
    sources
        .iter()
        .map(|s| {
            let mut v = Vec::with_capacity(len);
            v.extend_from_slice(&(s.len() as u16).to_be_bytes());
            v.extend_from_slice(s);
            v.resize(len, 0);
            v
        })
        .collect()
}

fn run(k: usize, frames: u64, mut loss: Loss, seed: u64) -> (String, Tally) {
    let name = loss.name();
    let overhead = FecOverhead::DEFAULT;
    let r = overhead.repair_count(k);
    let mut rng = SplitMix64::new(seed);
    let mut loss_rng = SplitMix64::new(seed ^ 0xABCD);
    let mut encoder = FecEncoder::new(overhead, seed);
    let mut decoder = FecDecoder::new();
    let mut seqs = SeqExtender::new();
    let mut t = Tally::default();
    let mut next_seq: u16 = 65000;
    // A handful of distinct frames reused (the content does not change the pattern's effect).
    let pool: Vec<Vec<Vec<u8>>> = (0..8).map(|_| payloads(&mut rng, k)).collect();
    for f in 0..frames {
        let sources = &pool[(f % pool.len() as u64) as usize];
        let refs: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
        let repairs = encoder.encode_frame(next_seq, &refs);
        assert_eq!(repairs.len(), r);
        // One loss pattern for both codes: sources first, then repairs, as they are sent.
        let lost: Vec<bool> = (0..k + r).map(|_| loss.lost(&mut loss_rng)).collect();
        t.frames += 1;
        t.wire_packets += (k + r) as u64;
        t.wire_lost += lost.iter().filter(|&&l| l).count() as u64;
        let source_lost = lost[..k].iter().filter(|&&l| l).count() as u64;
        t.source_lost += source_lost;

        // XOR code through the receiver's decoder.
        let mut xor_recovered = 0;
        for (i, s) in sources.iter().enumerate() {
            let seq = seqs.extend(next_seq.wrapping_add(i as u16));
            if !lost[i] {
                xor_recovered += decoder.add_source(seq, s).len();
            }
        }
        for (j, rep) in repairs.iter().enumerate() {
            if !lost[k + j] {
                let parsed = RepairPacket::parse(rep).expect("own repair packet parses");
                for rec in decoder.add_repair(&parsed, 0, &seqs) {
                    let i = (rec.seq.wire().wrapping_sub(next_seq)) as usize;
                    assert_eq!(rec.payload, sources[i], "XOR recovered a wrong payload");
                    xor_recovered += 1;
                }
            }
        }
        t.xor_recovered += xor_recovered as u64;
        if xor_recovered as u64 == source_lost {
            t.xor_complete += 1;
        }

        // Reed-Solomon on the same pattern.
        if source_lost == 0 {
            t.rs_complete += 1;
        } else {
            let received = lost.iter().filter(|&&l| !l).count();
            if received >= k {
                let shards = rs_shards(sources);
                let recovery = reed_solomon_simd::encode(k, r, &shards).expect("rs encode");
                let original = shards.iter().enumerate().filter(|(i, _)| !lost[*i]);
                let rec = recovery.iter().enumerate().filter(|(j, _)| !lost[k + j]);
                let restored = reed_solomon_simd::decode(k, r, original, rec).expect("rs decode");
                for (i, shard) in &restored {
                    assert_eq!(shard, &shards[*i], "RS restored a wrong shard");
                }
                t.rs_recovered += restored.len() as u64;
                t.rs_complete += 1;
            }
        }
        next_seq = next_seq.wrapping_add(k as u16);
    }
    (name, t)
}

fn pct(a: u64, b: u64) -> String {
    if b == 0 {
        "   n/a".to_owned()
    } else {
        format!("{:6.2}%", 100.0 * a as f64 / b as f64)
    }
}

fn throughput(k: usize, rounds: u32) {
    let mut rng = SplitMix64::new(77);
    let sources = payloads(&mut rng, k);
    let refs: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
    let bytes: usize = sources.iter().map(Vec::len).sum();
    let r = FecOverhead::DEFAULT.repair_count(k);
    let mb = |secs: f64| bytes as f64 * f64::from(rounds) / secs / 1e6;

    let mut sink = vec![0u8; bytes];
    let t = Instant::now();
    for _ in 0..rounds {
        let mut at = 0;
        for s in &sources {
            sink[at..at + s.len()].copy_from_slice(black_box(s));
            at += s.len();
        }
        black_box(&mut sink);
    }
    let memcpy = mb(t.elapsed().as_secs_f64());

    let mut encoder = FecEncoder::new(FecOverhead::DEFAULT, 1);
    let t = Instant::now();
    let mut repairs = Vec::new();
    for _ in 0..rounds {
        repairs = black_box(encoder.encode_frame(100, black_box(&refs)));
    }
    let xor_enc = mb(t.elapsed().as_secs_f64());

    // Decode: every source but one (spread over the block) arrives, then the repairs recover it.
    let parsed: Vec<RepairPacket<'_>> = repairs
        .iter()
        .map(|p| RepairPacket::parse(p).expect("parses"))
        .collect();
    let mut decoder = FecDecoder::new();
    let mut seqs = SeqExtender::new();
    let mut base: u16 = 100;
    let t = Instant::now();
    let mut recovered = 0;
    for round in 0..rounds {
        let missing = round as usize % k;
        for (i, s) in sources.iter().enumerate() {
            let seq = seqs.extend(base.wrapping_add(i as u16));
            if i != missing {
                decoder.add_source(seq, s);
            }
        }
        for p in &parsed {
            let moved = RepairPacket {
                base_seq: base,
                ..*p
            };
            recovered += decoder.add_repair(&moved, 0, &seqs).len();
        }
        base = base.wrapping_add(k as u16);
    }
    let xor_dec = mb(t.elapsed().as_secs_f64());
    assert_eq!(
        recovered, rounds as usize,
        "decode benchmark did not recover every loss"
    );

    let shards = rs_shards(&sources);
    let t = Instant::now();
    let mut recovery = Vec::new();
    for _ in 0..rounds {
        recovery =
            black_box(reed_solomon_simd::encode(k, r, black_box(&shards)).expect("rs encode"));
    }
    let rs_enc = mb(t.elapsed().as_secs_f64());
    let t = Instant::now();
    for round in 0..rounds {
        let missing = round as usize % k;
        let original = shards.iter().enumerate().filter(|(i, _)| *i != missing);
        let restored =
            reed_solomon_simd::decode(k, r, original, recovery.iter().enumerate().take(1))
                .expect("rs decode");
        black_box(restored);
    }
    let rs_dec = mb(t.elapsed().as_secs_f64());

    // Deriving a block's subsets from its seed: once per block on each side.
    let t = Instant::now();
    for round in 0..rounds {
        black_box(block_rows(black_box(round), k, r));
    }
    let derive_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    let encode_us = bytes as f64 / xor_enc;
    println!("K={k:3} subsets from the seed: {derive_us:.2} us per block ({:.0}% of the XOR encode time)", 100.0 * derive_us / encode_us);
    println!(
        "K={k:3} ({bytes} source bytes/frame)  memcpy {memcpy:9.0} MB/s | XOR encode {xor_enc:7.0} MB/s ({:5.1}x memcpy time), decode 1 loss {xor_dec:7.0} MB/s ({:5.1}x) | RS encode {rs_enc:7.0} MB/s ({:5.1}x), decode 1 loss {rs_dec:7.0} MB/s ({:5.1}x)",
        memcpy / xor_enc,
        memcpy / xor_dec,
        memcpy / rs_enc,
        memcpy / rs_dec,
    );
}

fn main() {
    let frames_20: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50_000);
    println!("CPU: {}", cpu_model());
    println!("FEC at 25% overhead; XOR = keymash's LT-style code, RS = reed-solomon-simd (MDS upper bound), same loss pattern");
    println!(
        "{:<48} {:>4} {:>7} {:>9} {:>9} | {:>12} {:>12} | {:>12} {:>12}",
        "loss model",
        "K",
        "frames",
        "wire loss",
        "src lost",
        "XOR recov",
        "RS recov",
        "XOR frames ok",
        "RS frames ok"
    );
    for (k, frames) in [(20usize, frames_20), (100, frames_20 / 5)] {
        let models = [
            Loss::Bernoulli(0.01),
            Loss::Bernoulli(0.03),
            Loss::Bernoulli(0.05),
            Loss::GilbertElliott {
                to_bad: 0.01,
                to_good: 0.5,
                bad: false,
            },
            Loss::GilbertElliott {
                to_bad: 0.01,
                to_good: 0.25,
                bad: false,
            },
        ];
        for (m, loss) in models.into_iter().enumerate() {
            let (name, t) = run(k, frames, loss, 1000 + m as u64);
            println!(
                "{:<48} {:>4} {:>7} {:>9} {:>9} | {:>12} {:>12} | {:>12} {:>12}",
                name,
                k,
                t.frames,
                pct(t.wire_lost, t.wire_packets),
                t.source_lost,
                pct(t.xor_recovered, t.source_lost),
                pct(t.rs_recovered, t.source_lost),
                pct(t.xor_complete, t.frames),
                pct(t.rs_complete, t.frames),
            );
        }
    }
    println!(
        "throughput (source bytes per second; ratio = time relative to memcpy of the same bytes):"
    );
    throughput(20, 20_000);
    throughput(100, 4_000);
}
