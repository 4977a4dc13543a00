//! A real writer or reader process for keymash-shm's multi-process tests and benchmark.
//!
//! ```text
//! shm-test-peer write      --prefix P --name N --slot-size S --slots C [--frames K]
//!                          [--interval-us U] [--stop-mid-write] [--umask 022] [--group]
//! shm-test-peer read       --prefix P --name N (--accept K | --for-ms D) [--timeout-ms T] [--oldest]
//! shm-test-peer cell-write --prefix P --name N [--stores K] [--interval-us U]
//! ```
//!
//! It reports on stdout, one `WORD key=value ...` line per event: `ATTACHED`, `READY`,
//! `MIDWRITE` (then it stops forever, half-way through a frame, waiting to be killed), `DONE`,
//! `RESULT`. Frames carry [`keymash_shm::test_pattern`] payloads so readers can prove that every
//! frame they accept is intact. With `--oldest` a reader reads, after every new frame, the oldest
//! frame still in the ring: the very slot the writer overwrites next, the worst case for tearing.
//! It also counts `caught_torn`: reads that were rejected as overwritten and whose bytes were
//! indeed not the frame (evidence that tearing happened and was caught, not merely absent).
//! `--for-ms` reads for that long instead of until K frames are accepted: a reader on the oldest
//! slot loses almost every race to a writer running flat out on an idle core, so how many frames
//! it gets in a given time depends on the machine, not on the ring.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use keymash_core::units::FrameNo;
use keymash_shm::test_pattern::{self, PatternRecord};
use keymash_shm::{
    monotonic_now_ns, CellWriter, FrameMeta, Permissions, Prefix, ReadError, RecvError,
    RingGeometry, RingReader, RingWriter, SegmentId, SegmentName,
};

struct Args {
    command: String,
    options: HashMap<String, String>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut raw = std::env::args().skip(1);
        let command = raw
            .next()
            .ok_or("missing command (write, read, cell-write)")?;
        let mut options = HashMap::new();
        let rest: Vec<String> = raw.collect();
        let mut index = 0;
        while index < rest.len() {
            let key = rest[index]
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {:?}", rest[index]))?;
            match rest.get(index + 1).filter(|value| !value.starts_with("--")) {
                Some(value) => {
                    options.insert(key.to_owned(), value.clone());
                    index += 2;
                }
                None => {
                    options.insert(key.to_owned(), String::new());
                    index += 1;
                }
            }
        }
        Ok(Args { command, options })
    }

    fn text(&self, key: &str) -> Result<&str, String> {
        self.options
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("missing --{key}"))
    }

    fn number(&self, key: &str, default: Option<u64>) -> Result<u64, String> {
        match (self.options.get(key), default) {
            (Some(value), _) => value.parse().map_err(|e| format!("--{key} {value:?}: {e}")),
            (None, Some(default)) => Ok(default),
            (None, None) => Err(format!("missing --{key}")),
        }
    }

    fn flag(&self, key: &str) -> bool {
        self.options.contains_key(key)
    }

    fn segment(&self) -> Result<SegmentId, String> {
        let prefix = Prefix::new(self.text("prefix")?).map_err(|e| e.to_string())?;
        let name = SegmentName::new(self.text("name")?).map_err(|e| e.to_string())?;
        Ok(SegmentId::new(prefix, name))
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The test reads these lines; if it has gone away there is nobody left to tell.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn usize_arg(args: &Args, key: &str, default: Option<u64>) -> Result<usize, String> {
    usize::try_from(args.number(key, default)?).map_err(|e| format!("--{key}: {e}"))
}

fn write(args: &Args) -> Result<(), String> {
    let id = args.segment()?;
    if let Some(mask) = args.options.get("umask") {
        let bits = u32::from_str_radix(mask, 8).map_err(|e| format!("--umask {mask:?}: {e}"))?;
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(bits));
    }
    let permissions = if args.flag("group") {
        Permissions::OwnerAndGroup
    } else {
        Permissions::OwnerOnly
    };
    let slot_size = usize_arg(args, "slot-size", None)?;
    let geometry =
        RingGeometry::new(slot_size, usize_arg(args, "slots", None)?).map_err(|e| e.to_string())?;
    let frames = args.number("frames", Some(0))?;
    let interval = Duration::from_micros(args.number("interval-us", Some(0))?);
    let (mut writer, attach) =
        RingWriter::open(&id, geometry, permissions).map_err(|e| e.to_string())?;
    say(&format!(
        "ATTACHED attach={:?} next_seq={} repaired={}",
        attach.attach, attach.next_seq, attach.repaired_slots
    ));
    for _ in 0..frames {
        let mut slot = writer.begin();
        let seq = slot.seq();
        let len = test_pattern::frame_len(seq, slot_size);
        test_pattern::fill(seq, &mut slot.payload_mut()[..len]);
        let words = [u32::try_from(len).map_err(|e| e.to_string())?, 0, 0, 0, 0];
        let meta = FrameMeta::new(FrameNo(seq), monotonic_now_ns()).with_words(words);
        slot.commit(len, &meta).map_err(|e| e.to_string())?;
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
    }
    if args.flag("stop-mid-write") {
        let mut slot = writer.begin();
        let seq = slot.seq();
        let half = slot_size / 2;
        test_pattern::fill(seq, &mut slot.payload_mut()[..half]);
        say(&format!("MIDWRITE seq={seq}"));
        // Stand still half-way through the frame until the test kills us with SIGKILL.
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    say(&format!("DONE next_seq={}", writer.next_seq()));
    Ok(())
}

#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    corrupt: u64,
    overwritten: u64,
    caught_torn: u64,
    missed: u64,
    unexplained_gaps: u64,
    first: Option<u64>,
    last: Option<u64>,
}

fn read(args: &Args) -> Result<(), String> {
    let id = args.segment()?;
    let (target, deadline) = match args.options.get("for-ms") {
        Some(_) => (
            u64::MAX,
            Some(Instant::now() + Duration::from_millis(args.number("for-ms", None)?)),
        ),
        None => (args.number("accept", None)?, None),
    };
    let timeout = Duration::from_millis(args.number("timeout-ms", Some(5_000))?);
    let mut reader = RingReader::open(&id).map_err(|e| e.to_string())?;
    say(&format!("READY write_seq={}", reader.write_seq()));
    let mut buf = Vec::with_capacity(reader.geometry().slot_size());
    let mut tally = Tally::default();
    // Frames skipped (lapped or overwritten) since the last accepted one.
    let mut skipped_since_last = 0;
    let mut outcome = "complete";
    let oldest = args.flag("oldest");
    while tally.accepted < target && deadline.is_none_or(|d| Instant::now() < d) {
        let arrival = match reader.next(timeout) {
            Ok(arrival) => arrival,
            Err(RecvError::TimedOut) => {
                outcome = "timed-out";
                break;
            }
            Err(other) => return Err(other.to_string()),
        };
        tally.missed += arrival.missed;
        skipped_since_last += arrival.missed;
        let seq = if oldest {
            reader.retained().start
        } else {
            arrival.seq
        };
        // Checked inside the closure too, so a rejected read shows whether its bytes were torn.
        let mut copy_intact = false;
        let outcome_of_read = reader.read_seq_with(seq, |meta, payload| {
            payload.copy_into_vec(&mut buf);
            copy_intact = meta.frame().0 == seq
                && meta.words()[0] as usize == buf.len()
                && test_pattern::verify(seq, &buf);
        });
        match outcome_of_read {
            Ok(()) => {
                tally.accepted += 1;
                if !copy_intact {
                    tally.corrupt += 1;
                }
                if !oldest {
                    if let Some(last) = tally.last {
                        if seq != last + 1 + skipped_since_last {
                            tally.unexplained_gaps += 1;
                        }
                    }
                }
                tally.first.get_or_insert(seq);
                tally.last = Some(seq);
                skipped_since_last = 0;
            }
            Err(ReadError::Overwritten { .. }) => {
                tally.overwritten += 1;
                if !copy_intact {
                    tally.caught_torn += 1;
                }
                skipped_since_last += 1;
            }
            Err(other) => return Err(other.to_string()),
        }
    }
    let show = |seq: Option<u64>| seq.map_or("none".to_owned(), |s| s.to_string());
    say(&format!(
        "RESULT outcome={outcome} accepted={} corrupt={} overwritten={} caught_torn={} missed={} unexplained_gaps={} first={} last={}",
        tally.accepted,
        tally.corrupt,
        tally.overwritten,
        tally.caught_torn,
        tally.missed,
        tally.unexplained_gaps,
        show(tally.first),
        show(tally.last)
    ));
    Ok(())
}

fn cell_write(args: &Args) -> Result<(), String> {
    let id = args.segment()?;
    let stores = args.number("stores", Some(u64::MAX))?;
    let interval = Duration::from_micros(args.number("interval-us", Some(0))?);
    let (mut writer, attach) = CellWriter::<PatternRecord>::open(&id, Permissions::OwnerOnly)
        .map_err(|e| e.to_string())?;
    say(&format!("ATTACHED attach={attach:?}"));
    for seq in 1..=stores {
        writer.store(&PatternRecord::new(seq));
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
    }
    say("DONE");
    Ok(())
}

fn main() -> ExitCode {
    let result = Args::parse().and_then(|args| match args.command.as_str() {
        "write" => write(&args),
        "read" => read(&args),
        "cell-write" => cell_write(&args),
        other => Err(format!("unknown command {other:?}")),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            say(&format!("ERROR {message}"));
            eprintln!("shm-test-peer: {message}");
            ExitCode::from(2)
        }
    }
}
