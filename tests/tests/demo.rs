//! `keymash demo` as a newcomer runs it (root: two namespaces and the eBPF loss): the real binary
//! for 15 s with a 1 s delay. Its table shows about 40% drop with nobody mashing and none at
//! full mashing, a higher PSNR at high mashing than at low; it writes a contact sheet and a plot
//! of the run, each a whole PNG of the expected size; and it leaves no namespace, veth, process,
//! FIFO or shared-memory segment.

use std::path::Path;
use std::process::Command;

use keymash_tests::{require_root, unique_name};

/// Size of the contact sheet for the demo's 320x240 pictures: two columns of 320 with 8-pixel
/// margins, a title line, three pictures of 240 with a caption line each.
const SHEET_WIDTH: u32 = 664;
const SHEET_HEIGHT: u32 = 819;
/// Size of the plot of mash level, drop %, quality and PSNR over the run.
const PLOT_WIDTH: u32 = 1200;
const PLOT_HEIGHT: u32 = 900;

/// One row of the demo's table.
#[derive(Debug, Clone, Copy)]
struct Row {
    t: u32,
    mash: f64,
    drop: Option<f64>,
    psnr: Option<f64>,
}

fn parse_rows(stdout: &str) -> Vec<Row> {
    stdout
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let t = cols.first()?.strip_suffix('s')?.parse().ok()?;
            let number = |i: usize| cols.get(i).and_then(|c| c.parse::<f64>().ok());
            (cols.len() == 7).then(|| Row {
                t,
                mash: number(1).unwrap_or(0.0),
                drop: number(2),
                psnr: number(5),
            })
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    assert!(!values.is_empty(), "no values");
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn mean(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "no values");
    values.iter().sum::<f64>() / values.len() as f64
}

/// CRC-32 as PNG chunks carry it (ISO 3309, reflected polynomial 0xEDB88320).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Width and height of a PNG, after walking it as a decoder does: the signature, then chunks
/// each whole and with a right CRC, IHDR first (8-bit RGB), at least one IDAT, IEND last with
/// nothing after it. (The image data is not inflated: this package has no PNG or zlib crate.)
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{}: not a PNG signature",
        path.display()
    );
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes"));
    let mut at = 8;
    let mut kinds = Vec::new();
    while at < bytes.len() {
        assert!(at + 12 <= bytes.len(), "{}: a cut chunk", path.display());
        let len = be(at) as usize;
        let end = at + 8 + len;
        assert!(end + 4 <= bytes.len(), "{}: a cut chunk", path.display());
        let kind = String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned();
        assert_eq!(
            crc32(&bytes[at + 4..end]),
            be(end),
            "{}: bad CRC in chunk {kind}",
            path.display()
        );
        kinds.push(kind);
        at = end + 4;
    }
    assert_eq!(kinds.first().map(String::as_str), Some("IHDR"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("IEND"), "{kinds:?}");
    assert!(
        kinds.iter().any(|k| k == "IDAT"),
        "no image data: {kinds:?}"
    );
    // IHDR: width, height, bit depth 8, colour type 2 (RGB).
    assert_eq!((bytes[24], bytes[25]), (8, 2), "not 8-bit RGB");
    (be(16), be(20))
}

/// The output of `ip ARGS...`.
fn ip(args: &[&str]) -> String {
    let output = Command::new("ip").args(args).output().expect("run ip");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Processes whose command line mentions `needle` (the demo's output directory).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            text.contains(needle).then_some(text)
        })
        .collect()
}

#[test]
fn the_demo_shows_loss_falling_and_psnr_rising_with_mashing_and_leaves_nothing_behind() {
    require_root();
    let out = std::env::temp_dir().join(unique_name("keymash-demo-test"));
    let child = Command::new(keymash_tests::service_binary("keymash"))
        .args(["demo", "--seconds", "15", "--delay", "1", "--out"])
        .arg(&out)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .spawn_output();
    let (status, pid, stdout, stderr) = child;
    eprintln!("{stdout}\n{stderr}");
    assert!(status.success(), "keymash demo failed ({status})");

    let rows = parse_rows(&stdout);
    assert_eq!(rows.len(), 15, "one table row a second");
    // The opening idle stretch (the script starts mashing at 30% of the run, 4.5 s), after the
    // filter's first whole second.
    let idle: Vec<Row> = rows
        .iter()
        .copied()
        .filter(|r| (2..=4).contains(&r.t) && r.mash < 0.1)
        .collect();
    let full: Vec<Row> = rows.iter().copied().filter(|r| r.mash >= 0.85).collect();
    assert!(
        idle.len() >= 2 && full.len() >= 2,
        "idle rows {idle:?}, full-mashing rows {full:?}"
    );
    let idle_drop = median(idle.iter().filter_map(|r| r.drop).collect());
    let full_drop = median(full.iter().filter_map(|r| r.drop).collect());
    assert!(
        (28.0..=52.0).contains(&idle_drop),
        "drop % with nobody mashing: {idle_drop}"
    );
    assert!(full_drop < 2.0, "drop % at full mashing: {full_drop}");
    let idle_psnr = mean(&idle.iter().filter_map(|r| r.psnr).collect::<Vec<_>>());
    let full_psnr = mean(&full.iter().filter_map(|r| r.psnr).collect::<Vec<_>>());
    assert!(
        full_psnr > idle_psnr + 3.0,
        "PSNR {full_psnr:.1} dB at full mashing vs {idle_psnr:.1} dB idle"
    );
    assert!(stdout.contains("summary: low mashing"), "no summary line");

    let sheet = out.join("contact-sheet.png");
    assert!(
        stdout.contains(&sheet.display().to_string()),
        "the contact sheet's path is not printed"
    );
    assert_eq!(png_size(&sheet), (SHEET_WIDTH, SHEET_HEIGHT));
    let plot = out.join("plot.png");
    assert!(
        stdout.contains(&plot.display().to_string()),
        "the plot's path is not printed"
    );
    assert_eq!(png_size(&plot), (PLOT_WIDTH, PLOT_HEIGHT));

    // Nothing left behind: namespaces (and with them the veth pair and the tc filter on it),
    // processes, shared memory, the FIFO.
    let namespaces = ip(&["netns", "list"]);
    assert!(
        !namespaces.contains(&format!("-{pid}-")),
        "namespaces left: {namespaces}"
    );
    let links = ip(&["-o", "link"]);
    assert!(
        !links.contains("km-left") && !links.contains("km-right"),
        "veth left in the root namespace: {links}"
    );
    let left = processes_mentioning(&out.display().to_string());
    assert!(left.is_empty(), "processes left: {left:?}");
    let prefix = format!("kmdemo{pid}.");
    let segments: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect();
    assert!(segments.is_empty(), "shared memory left: {segments:?}");
    assert!(!out.join("displayed.fifo").exists(), "the FIFO is left");
    let _ = std::fs::remove_dir_all(&out);
}

/// How long the 15-second demo may take in all before the test gives up on it: starting eight
/// services in two namespaces, the run, the contact sheet and the cleanup take about 25 s.
const DEMO_DEADLINE: std::time::Duration = std::time::Duration::from_secs(180);

/// `Command::output`, keeping the child's pid (the demo names its namespaces and segments by it),
/// with a deadline: a demo still running after [`DEMO_DEADLINE`] is stopped (SIGTERM, so that
/// it removes what it made; SIGKILL ten seconds later) and the test fails with its output.
trait SpawnOutput {
    fn spawn_output(&mut self) -> (std::process::ExitStatus, u32, String, String);
}

impl SpawnOutput for Command {
    fn spawn_output(&mut self) -> (std::process::ExitStatus, u32, String, String) {
        use std::io::Read as _;
        use std::process::Stdio;
        use std::time::{Duration, Instant};
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keymash demo");
        let pid = child.id();
        let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("stdout is piped")));
        let stderr = drain(Box::new(child.stderr.take().expect("stderr is piped")));
        let started = Instant::now();
        let mut terminated_at = None;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for keymash demo") {
                break status;
            }
            match terminated_at {
                None if started.elapsed() > DEMO_DEADLINE => {
                    let _ = Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status();
                    terminated_at = Some(Instant::now());
                }
                Some(at) if at.elapsed() > Duration::from_secs(10) => {
                    let _ = child.kill();
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (stdout, stderr) = (
            stdout.join().unwrap_or_default(),
            stderr.join().unwrap_or_default(),
        );
        assert!(
            terminated_at.is_none(),
            "keymash demo --seconds 15 was still running after {DEMO_DEADLINE:?} and was stopped ({status}):\n{stdout}\n{stderr}"
        );
        (status, pid, stdout, stderr)
    }
}
