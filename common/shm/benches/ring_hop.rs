//! Cross-process hop latency through a ring: a writer process commits a frame stamped with
//! CLOCK_MONOTONIC, a reader process sleeping on the futex wakes, copies it out (`recv_into`,
//! the one copy of the hop) and notes how long after the commit it had the validated frame.
//!
//! Runs for 64-byte messages and 460,800-byte frames (640x480 4:2:0), beside a plain memcpy of
//! the same bytes in the same run, and counts heap allocations in the measured loop of both
//! processes with a counting global allocator. Run: `cargo bench -p keymash-shm --bench ring_hop`.
// A global allocator needs `unsafe impl`; this bench belongs to keymash-shm, the crate allowed it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keymash_core::units::FrameNo;
use keymash_shm::{
    monotonic_now_ns, remove_segments, FrameMeta, Permissions, Prefix, RecvError, RingGeometry,
    RingReader, RingWriter, SegmentId, SegmentName,
};

/// Counts every allocation (and reallocation) made through the global allocator.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged,
// so System's guarantees carry over; the only addition is a relaxed counter increment.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc`/`realloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const ROLE_ENV: &str = "KEYMASH_RING_HOP_READER";
/// Frames sent before measuring, so page faults and buffer growth are out of the figures.
const WARMUP_FRAMES: u64 = 200;
/// Slots in the benchmark rings: plenty, so the reader is never lapped at these rates.
const SLOTS: usize = 8;
/// Flag on the last frame: the reader stops and reports.
const FLAG_LAST: u32 = 1;

struct Scenario {
    label: &'static str,
    size: usize,
    frames: u64,
    /// Pause between frames, long enough that the reader is asleep on the futex each time.
    interval: Duration,
}

const SCENARIOS: [Scenario; 2] = [
    Scenario {
        label: "64 B message",
        size: 64,
        frames: 5_000,
        interval: Duration::from_micros(300),
    },
    Scenario {
        label: "640x480 4:2:0 frame",
        size: 460_800,
        frames: 2_000,
        interval: Duration::from_millis(1),
    },
];

#[derive(Debug, Clone, Copy)]
struct Percentiles {
    p50: u64,
    p99: u64,
    max: u64,
}

impl Percentiles {
    fn of(samples: &mut [u64]) -> Percentiles {
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }

    fn micros(&self) -> String {
        let us = |ns: u64| ns as f64 / 1_000.0;
        format!(
            "p50 {:9.2} us  p99 {:9.2} us  max {:9.2} us",
            us(self.p50),
            us(self.p99),
            us(self.max)
        )
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(spec) = std::env::var(ROLE_ENV) {
        return reader_process(&spec);
    }
    let prefix = Prefix::new(&format!("kmbench{}", std::process::id()))?;
    println!("ring_hop: cross-process writer -> futex -> reader hop, {SLOTS}-slot rings");
    println!("cpu: {}", cpu_model());
    println!(
        "cores online: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let outcome = SCENARIOS
        .iter()
        .try_for_each(|scenario| run_scenario(&prefix, scenario));
    remove_segments(&prefix)?;
    outcome
}

fn run_scenario(prefix: &Prefix, scenario: &Scenario) -> Result<(), Box<dyn std::error::Error>> {
    let name = SegmentName::new(&format!("hop-{}", scenario.size))?;
    let id = SegmentId::new(prefix.clone(), name.clone());
    let geometry = RingGeometry::new(scenario.size, SLOTS)?;
    let (mut writer, _) = RingWriter::open(&id, geometry, Permissions::OwnerOnly)?;

    let mut reader = Command::new(std::env::current_exe()?)
        .env(
            ROLE_ENV,
            format!("{prefix} {name} {} {}", scenario.frames, WARMUP_FRAMES),
        )
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(reader.stdout.take().ok_or("reader stdout")?).lines();
    let ready = lines.next().ok_or("reader exited")??;
    if ready != "READY" {
        return Err(format!("reader said {ready:?}").into());
    }

    // Two source frames, alternated, stand in for what a producer computes per frame.
    let sources = [vec![0x5Au8; scenario.size], vec![0xA5u8; scenario.size]];
    let total = WARMUP_FRAMES + scenario.frames;
    let mut writer_allocations = 0;
    for n in 0..total {
        if n == WARMUP_FRAMES {
            writer_allocations = ALLOCATIONS.load(Ordering::Relaxed);
        }
        std::thread::sleep(scenario.interval);
        let mut slot = writer.begin();
        slot.payload_mut()
            .copy_from_slice(&sources[(n % 2) as usize]);
        let flags = if n + 1 == total { FLAG_LAST } else { 0 };
        // Stamped last, just before the commit: the hop starts when the frame is published.
        let meta = FrameMeta::new(FrameNo(n), monotonic_now_ns()).with_flags(flags);
        slot.commit(scenario.size, &meta)?;
    }
    writer_allocations = ALLOCATIONS.load(Ordering::Relaxed) - writer_allocations;

    let result = lines.next().ok_or("reader exited without a result")??;
    reader.wait()?;
    let field = |key: &str| -> Result<u64, Box<dyn std::error::Error>> {
        let value = result
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .ok_or_else(|| format!("no {key} in {result:?}"))?;
        Ok(value.parse()?)
    };
    let hop = Percentiles {
        p50: field("hop_p50")?,
        p99: field("hop_p99")?,
        max: field("hop_max")?,
    };
    let wake = Percentiles {
        p50: field("wake_p50")?,
        p99: field("wake_p99")?,
        max: field("wake_max")?,
    };
    let memcpy = memcpy_baseline(scenario.size, scenario.frames);

    println!();
    println!(
        "{} ({} bytes), {} frames every {:?}:",
        scenario.label, scenario.size, scenario.frames, scenario.interval
    );
    println!("  hop (commit -> copied & validated)  {}", hop.micros());
    println!("  wake (commit -> reader running)     {}", wake.micros());
    println!("  memcpy of the same bytes            {}", memcpy.micros());
    println!(
        "  hop / memcpy at p50: {:.1}x   frames missed by reader: {}",
        hop.p50 as f64 / memcpy.p50.max(1) as f64,
        field("missed")?
    );
    println!(
        "  heap allocations in the measured loop: writer {writer_allocations}, reader {} (over {} frames)",
        field("allocations")?,
        scenario.frames
    );
    println!("  copies per hop: 1 (writer fills the slot in place; reader recv_into copies once)");
    Ok(())
}

/// A plain copy of `size` bytes between two buffers, timed `count` times.
fn memcpy_baseline(size: usize, count: u64) -> Percentiles {
    let source = vec![0x5Au8; size];
    let mut target = vec![0u8; size];
    let mut samples = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let started = Instant::now();
        target.copy_from_slice(std::hint::black_box(&source));
        std::hint::black_box(&mut target);
        samples.push(started.elapsed().as_nanos() as u64);
    }
    Percentiles::of(&mut samples)
}

/// The reader process: `<prefix> <name> <frames> <warmup>` in the environment.
fn reader_process(spec: &str) -> Result<(), Box<dyn std::error::Error>> {
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [prefix, name, frames, warmup] = parts[..] else {
        return Err(format!("bad {ROLE_ENV} {spec:?}").into());
    };
    let id = SegmentId::new(Prefix::new(prefix)?, SegmentName::new(name)?);
    let frames: usize = frames.parse()?;
    let warmup: u64 = warmup.parse()?;
    let mut reader = RingReader::open(&id)?;
    let mut buf = Vec::with_capacity(reader.geometry().slot_size());
    let mut hops = Vec::with_capacity(frames);
    let mut wakes = Vec::with_capacity(frames);
    let mut missed = 0;
    let mut allocations_at_start = ALLOCATIONS.load(Ordering::Relaxed);
    println!("READY");
    std::io::stdout().flush()?;
    loop {
        let arrival = match reader.next(Duration::from_secs(10)) {
            Ok(arrival) => arrival,
            Err(RecvError::TimedOut) => return Err("writer went silent".into()),
            Err(other) => return Err(other.into()),
        };
        let woken_ns = monotonic_now_ns();
        let meta = reader.read_into(&mut buf)?;
        let done_ns = monotonic_now_ns();
        let seq = meta.frame().0;
        if seq == warmup {
            allocations_at_start = ALLOCATIONS.load(Ordering::Relaxed);
        }
        if seq >= warmup {
            missed += arrival.missed;
            hops.push(done_ns.saturating_sub(meta.capture_ns()));
            wakes.push(woken_ns.saturating_sub(meta.capture_ns()));
        }
        if meta.flags() & FLAG_LAST != 0 {
            break;
        }
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations_at_start;
    let hop = Percentiles::of(&mut hops);
    let wake = Percentiles::of(&mut wakes);
    println!(
        "RESULT hop_p50={} hop_p99={} hop_max={} wake_p50={} wake_p99={} wake_max={} missed={missed} allocations={allocations}",
        hop.p50, hop.p99, hop.max, wake.p50, wake.p99, wake.max
    );
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
