//! The full seeded fuzz run: at least 1,000,000 mutated datagrams through every parser and both
//! endpoints. `cargo bench -p keymash-transport --bench fuzz_parsers [-- CASES [SEED]]`.

#[path = "../tests/support/fuzz.rs"]
mod fuzz;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let cases = args.first().copied().unwrap_or(1_000_000);
    let seed = args.get(1).copied().unwrap_or(0x5EED_F022);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!(
        "CPU: {cpu} ({} threads visible)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let started = std::time::Instant::now();
    let report = fuzz::run(cases, seed);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz_parsers: {} cases (seed {seed:#x}) in {secs:.1} s, {:.0} cases/s, no panic",
        report.cases,
        report.cases as f64 / secs
    );
    println!("  valid after mutation: rtp {} rtcp {} fec-repair {}; receiver counted {} malformed, delivered {}", report.rtp_ok, report.rtcp_ok, report.repair_ok, report.receiver_malformed, report.receiver_delivered);
}
