//! The decoder fuzz run: at least 1,000,000 seeded random and mutated payloads (the test suite
//! runs the same generator for tens of thousands). A panic aborts the run (bench profile); a
//! write outside the payload's macroblocks is reported as a finding, and so is any difference
//! from a second decoder on the portable reference unit, which takes every case too (answers
//! every case, pictures as `FuzzOptions` says). The decoder under test runs on the widest
//! vector unit, or the one `KEYMASH_CODEC_SIMD` names.
//!
//!   cargo bench -p keymash-codec --bench decoder_fuzz
//!   KEYMASH_FUZZ_CASES=10000000 KEYMASH_FUZZ_SEED=7 cargo bench -p keymash-codec --bench decoder_fuzz
//!   KEYMASH_CODEC_SIMD=sse2 cargo bench -p keymash-codec --bench decoder_fuzz

mod support;

use keymash_codec::fuzz::{run_decoder_fuzz, FuzzOptions};
use keymash_codec::{FrameGeometry, Simd};
use std::time::Instant;

fn main() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let cases = env("KEYMASH_FUZZ_CASES", 1_000_000);
    let seed = env("KEYMASH_FUZZ_SEED", 0x006b_6579_6d61_7368);
    let unit = Simd::from_env().unwrap_or_else(|e| support::fail(&e.to_string()));
    println!("machine: {}", support::machine());
    println!("decoder under test: {unit}; reference: {}", Simd::Portable);
    // Small frames let every accepted case be checked for writes outside its macroblocks;
    // the VGA share checks the real geometry without that (costly) comparison.
    let runs: [(usize, usize, u64, bool); 4] = [
        (64, 48, cases * 4 / 10, true),
        (48, 32, cases * 3 / 10, true),
        (16, 16, cases / 10, true),
        (640, 480, cases - cases * 8 / 10, false),
    ];
    let (mut total, mut accepted, mut rejected) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    for (i, &(w, h, n, check_writes)) in runs.iter().enumerate() {
        let Ok(geometry) = FrameGeometry::new(w, h) else {
            continue;
        };
        let t = Instant::now();
        let options = FuzzOptions {
            check_writes,
            unit,
            reference: Some(Simd::Portable),
        };
        match run_decoder_fuzz(geometry, seed.wrapping_add(i as u64), n, options) {
            Ok(s) => {
                println!(
                    "{geometry:>8}: {:>9} cases, {:>8} applied, {:>9} refused ({} in the macroblock decoder), write and picture check {}, {:.1} s",
                    s.cases,
                    s.accepted,
                    s.rejected,
                    s.rejected_in_body,
                    if check_writes { "every case" } else { "every 64th" },
                    t.elapsed().as_secs_f64()
                );
                total += s.cases;
                accepted += s.accepted;
                rejected += s.rejected;
            }
            Err(finding) => {
                println!(
                    "FINDING with seed {}: {finding}",
                    seed.wrapping_add(i as u64)
                );
                std::process::exit(1);
            }
        }
    }
    println!(
        "total: {total} cases ({accepted} applied, {rejected} refused) in {:.1} s, seed {seed:#x}: no panic, no finding",
        start.elapsed().as_secs_f64()
    );
}
