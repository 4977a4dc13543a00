//! `keymash clean` removes one role's segments, and keeps those whose writer still runs unless
//! forced.

// Tests may unwrap (Cargo.toml's lint note); clippy.toml's allow-unwrap-in-tests covers only
// #[test] functions, not this file's helpers.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use keymash_core::config::Config;
use keymash_pipeline::{Segments, Service, MASH_CELL, RAW_FRAMES};
use keymash_service::StatsPublisher;
use keymash_shm::{
    list_segments, monotonic_now_ns, CellWriter, Permissions, Prefix, RemoveSegmentsOnDrop,
    RingGeometry, RingWriter,
};

fn names(prefix: &Prefix) -> Vec<String> {
    list_segments(prefix)
        .unwrap()
        .into_iter()
        .map(|r| r.id.name.as_str().to_owned())
        .collect()
}

#[test]
fn clean_removes_one_roles_segments_and_spares_live_writers_unless_forced() {
    let mut config = Config::default();
    config.shm.prefix = format!("kmtest-clean-{}", std::process::id());
    let prefix = Prefix::new(&config.shm.prefix).unwrap();
    let _cleanup = RemoveSegmentsOnDrop(prefix.clone());
    let segments = Segments::new(&config).unwrap();

    let (ring, _) = RingWriter::open(
        &segments.id(RAW_FRAMES).unwrap(),
        RingGeometry::new(64, 4).unwrap(),
        Permissions::OwnerOnly,
    )
    .unwrap();
    let stats =
        StatsPublisher::open(&config, Service::Encoder, "frames", monotonic_now_ns()).unwrap();
    let (mash, _) =
        CellWriter::<u64>::open(&segments.id(MASH_CELL).unwrap(), Permissions::OwnerOnly).unwrap();

    // This process is the live writer of all three: a plain clean keeps them and says so.
    let out = Command::new(env!("CARGO_BIN_EXE_keymash"))
        .args(["clean", "--role", "sender", "--prefix", &config.shm.prefix])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("still running"));
    assert_eq!(names(&prefix).len(), 3);

    // Forced, the sender's segments go and the receiver's mash cell stays.
    let out = Command::new(env!("CARGO_BIN_EXE_keymash"))
        .args([
            "clean",
            "--role",
            "sender",
            "--force",
            "--prefix",
            &config.shm.prefix,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(names(&prefix), vec![MASH_CELL.to_owned()]);

    drop((ring, stats, mash));
    let out = Command::new(env!("CARGO_BIN_EXE_keymash"))
        .args([
            "clean",
            "--role",
            "all",
            "--force",
            "--prefix",
            &config.shm.prefix,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(names(&prefix).is_empty());
}
