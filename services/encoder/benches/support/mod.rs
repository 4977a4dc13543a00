//! What the benches that run the real service binaries share: building them from the current
//! source tree, the CPU time of a process, and a service's statistics cell.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use keymash_pipeline::Service;
use keymash_shm::{CellReader, Prefix, SegmentId, SegmentName, ServiceStats};

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// utime + stime of `pid` in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

pub(crate) fn ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().ok();
    out.and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Builds `services` (`"net-tx"` for keymash-net-tx, ...) from the current source tree, for this
/// bench's profile and target directory (`target/release` under `cargo bench`), and returns
/// where they are: a bench that ran whatever an earlier build left there would measure stale
/// code. cargo has released its build lock by the time it runs a bench, and its fingerprints
/// make this a no-op when nothing changed.
pub(crate) fn build_services(services: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable");
    let Some(profile_dir) = exe.parent().and_then(Path::parent).map(Path::to_path_buf) else {
        eprintln!("error: {} is not in target/<profile>/deps", exe.display());
        std::process::exit(1);
    };
    let target_dir = profile_dir.parent().unwrap_or(Path::new("/")).to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("release")
        .to_owned();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.args([
        "build",
        "--locked",
        "--profile",
        if profile == "debug" { "dev" } else { &profile },
    ]);
    for service in services {
        command.args(["-p", &format!("keymash-{service}")]);
    }
    command
        .arg("--manifest-path")
        .arg(&workspace)
        .arg("--target-dir")
        .arg(&target_dir);
    match command.status() {
        Ok(status) if status.success() => profile_dir,
        outcome => {
            eprintln!("error: building the services failed ({outcome:?}): {command:?}");
            std::process::exit(1);
        }
    }
}

/// The statistics `service` last published under the shm `prefix`, if it has.
pub(crate) fn stats_of(prefix: &str, service: Service) -> Option<ServiceStats> {
    let id = SegmentId::new(
        Prefix::new(prefix).ok()?,
        SegmentName::new(&service.stats_cell()).ok()?,
    );
    CellReader::<ServiceStats>::open(&id).ok()?.load().ok()
}

/// A `[security]` section protecting the link with a new pre-shared key written to `dir`, as
/// on the exhibit (`keymash keygen`); the services refuse to start without the key file.
pub(crate) fn protected_link(dir: &Path) -> String {
    let key = keymash_core::key::PreSharedKey::from_bytes(
        keymash_service::random::bytes().expect("random key"),
    );
    let path = dir.join("keymash.key");
    std::fs::write(&path, key.to_file_text()).expect("write the key file");
    format!(
        "[security]\nmode = \"psk\"\nkey_file = \"{}\"\n",
        path.display()
    )
}
