//! The shared memory the pipeline takes is what `keymash check-config --memory` says, and every
//! page of it is reserved when a segment is created.
//!
//! The test creates every segment of both PCs the way the services do (through the
//! `keymash_pipeline::Segments` specs, at the default configuration under a private prefix),
//! then adds up the real files (`stat /dev/shm/<prefix>.*`): their lengths must equal the
//! per-PC totals `check-config --memory` prints (and the README gives), their allocated blocks
//! must cover those lengths (reserved, not sparse), and `keymash status --json` must count them.
//! The segments are removed by a guard, also when an assertion fails.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;

use keymash_core::config::Config;
use keymash_pipeline::{Role, Segments, Service};
use keymash_shm::{Prefix, RemoveSegmentsOnDrop};
use keymash_tests::json::Json;
use keymash_tests::{service_binary, unique_name};

/// A directory of the test's own, removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every writer of the pipeline, as its service opens it; held until the caller drops them.
fn create_every_segment(segments: &Segments) -> Vec<Box<dyn std::any::Any>> {
    let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
    let (hold, _) = segments.delay_hold().expect("hold spec");
    for ring in [
        segments.raw_frames().expect("raw-frames spec"),
        hold,
        segments.delayed_frames().expect("delayed-frames spec"),
        segments.payloads().expect("payloads spec"),
        segments.received().expect("received spec"),
        segments.screen().expect("screen spec"),
    ] {
        held.push(Box::new(ring.create().expect("create ring")));
    }
    held.push(Box::new(
        segments
            .quality_cell()
            .expect("quality spec")
            .create()
            .expect("quality"),
    ));
    held.push(Box::new(
        segments
            .mash_cell()
            .expect("mash spec")
            .create()
            .expect("mash"),
    ));
    for service in Service::ALL {
        held.push(Box::new(
            segments
                .stats_cell(service)
                .expect("stats spec")
                .create()
                .expect("stats cell"),
        ));
    }
    held
}

/// `/dev/shm/<prefix>.<name>` -> (length, allocated bytes).
fn files_of(prefix: &str) -> BTreeMap<String, (u64, u64)> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir("/dev/shm").expect("read /dev/shm") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(segment) = name.strip_prefix(&format!("{prefix}.")) {
            let meta = entry.metadata().expect("stat segment");
            files.insert(segment.to_owned(), (meta.len(), meta.blocks() * 512));
        }
    }
    files
}

/// The `N` of "total on the <role> PC: N bytes" in check-config's output.
fn printed_total(output: &str, role: Role) -> u64 {
    let head = format!("total on the {role} PC: ");
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix(&head))
        .unwrap_or_else(|| panic!("no {head:?} line in:\n{output}"));
    line.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line:?}"))
}

fn check_config_memory(config: &Path) -> String {
    let out = Command::new(service_binary("keymash"))
        .args(["check-config", "--no-key", "--memory"])
        .arg(config)
        .output()
        .expect("run keymash check-config");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "check-config --memory failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_segments_the_services_create_add_up_to_what_check_config_memory_prints() {
    let name = unique_name("memtotal");
    let prefix = format!("kmt{}", name.replace('-', ""));
    let dir = TempDir(std::env::temp_dir().join(format!("keymash-{name}")));
    std::fs::create_dir_all(&dir.0).expect("test directory");
    let config_path = dir.0.join("keymash.toml");
    // The default configuration (the README's figure) under a prefix of the test's own.
    std::fs::write(&config_path, format!("[shm]\nprefix = \"{prefix}\"\n")).expect("config");
    let mut config = Config::default();
    config.shm.prefix = prefix.clone();
    let _cleanup = RemoveSegmentsOnDrop(Prefix::new(&prefix).expect("prefix"));

    let printed = check_config_memory(&config_path);
    let segments = Segments::new(&config).expect("segments");
    let plan = segments.memory_plan().expect("memory plan");
    let writers = create_every_segment(&segments);
    let files = files_of(&prefix);

    // Every planned segment exists, nothing else does, each of the planned length...
    let planned: BTreeMap<String, u64> = plan
        .segments
        .iter()
        .map(|s| (s.name.clone(), s.bytes))
        .collect();
    let lengths: BTreeMap<String, u64> = files
        .iter()
        .map(|(n, (len, _))| (n.clone(), *len))
        .collect();
    assert_eq!(lengths, planned, "files in /dev/shm vs the plan");
    // ...with every page allocated: reserved at creation, so a full /dev/shm can never SIGBUS.
    for (name, (len, allocated)) in &files {
        assert!(
            allocated >= len,
            "{name}: only {allocated} of {len} bytes allocated (sparse)"
        );
    }
    // The per-PC totals printed are the sums of the real files.
    for role in [Role::Sender, Role::Receiver] {
        let real: u64 = plan
            .on(role)
            .map(|s| files.get(&s.name).map_or(0, |(len, _)| *len))
            .sum();
        assert_eq!(printed_total(&printed, role), real, "{role}:\n{printed}");
    }
    let all_real: u64 = files.values().map(|(len, _)| len).sum();
    assert_eq!(
        printed_total(&printed, Role::Sender) + printed_total(&printed, Role::Receiver),
        all_real
    );
    // The README's figures are these totals (the configuration above is the default one; the
    // prefix changes no size).
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    for role in [Role::Sender, Role::Receiver] {
        let figure = format!("{} bytes", printed_total(&printed, role));
        assert!(
            readme.split_whitespace().collect::<Vec<_>>().join(" ").contains(&figure),
            "README.md does not give the {role} PC's total ({figure}) that check-config --memory prints"
        );
    }

    // `keymash status` counts the same segments and pages.
    let out = Command::new(service_binary("keymash"))
        .args(["status", "--json", "--prefix", &prefix])
        .output()
        .expect("run keymash status");
    let text = String::from_utf8_lossy(&out.stdout);
    let report = Json::parse(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    let shm = report.get("shm").expect("status has shm");
    let allocated: u64 = files.values().map(|(_, a)| a).sum();
    assert_eq!(
        shm.get("prefix_segments").and_then(Json::as_f64),
        Some(files.len() as f64),
        "{text}"
    );
    assert_eq!(
        shm.get("prefix_bytes").and_then(Json::as_f64),
        Some(allocated as f64),
        "{text}"
    );
    let used = shm.get("used_bytes").and_then(Json::as_f64).expect("used");
    let total = shm
        .get("total_bytes")
        .and_then(Json::as_f64)
        .expect("total");
    assert!(
        total == 0.0 || (used >= allocated as f64 && used <= total),
        "{text}"
    );
    let out = Command::new(service_binary("keymash"))
        .args(["status", "--prefix", &prefix])
        .output()
        .expect("run keymash status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("/dev/shm: ")
                && l.contains(&format!("{} segment(s)", files.len()))),
        "{table}"
    );
    drop(writers);
}

#[test]
fn check_config_memory_refuses_a_delay_the_delay_buffer_would_refuse() {
    let name = unique_name("memrefused");
    let dir = TempDir(std::env::temp_dir().join(format!("keymash-{name}")));
    std::fs::create_dir_all(&dir.0).expect("test directory");
    let config = dir.0.join("keymash.toml");
    std::fs::write(&config, "[delay]\nseconds = 600.0\nmax_memory_mib = 1024\n").expect("config");
    let out = Command::new(service_binary("keymash"))
        .args(["check-config", "--no-key", "--memory"])
        .arg(&config)
        .output()
        .expect("run keymash check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("delay.seconds") && stderr.contains("delay.max_memory_mib"),
        "{stderr}"
    );
}
