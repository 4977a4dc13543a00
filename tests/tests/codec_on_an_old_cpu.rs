//! The same `keymash` binary on a CPU without AVX2 (issue 19: "the binary still runs on an
//! SSE2-only Optiplex"): `keymash codec roundtrip` runs under qemu's user-mode emulator with the
//! CPU model of an old Optiplex (`-cpu core2duo`: SSE2 to SSSE3, no SSE4, no AVX), says it used
//! SSE2, and gives exactly the bytes and the decoded video it gives natively (where this
//! machine's AVX2 is used if it has it). The vector unit is chosen at run time from CPUID, which
//! qemu answers with the emulated model, so this is the check a real old PC would make.
//!
//! Needs `qemu-x86_64` (Debian's qemu-user, installed by `deploy/install-deps.sh test`).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use keymash_codec::y4m::{Y4mHeader, Y4mWriter};
use keymash_codec::{FrameGeometry, I420Frame, Simd};
use keymash_core::FrameNo;
use keymash_media::SyntheticScene;
use keymash_tests::installed::TempDir;
use keymash_tests::service_binary;

const QEMU: &str = "qemu-x86_64";
/// The CPU of a Dell Optiplex 755 (Core 2 Duo): no AVX of any kind.
const OLD_CPU: &str = "core2duo";

fn write_clip(path: &Path) {
    let geometry = FrameGeometry::new(320, 240).unwrap();
    let mut scene = SyntheticScene::new(geometry, 7);
    let mut writer = Y4mWriter::new(
        std::fs::File::create(path).unwrap(),
        &Y4mHeader::new(geometry, "30:1"),
    )
    .unwrap();
    let mut frame = I420Frame::grey(geometry);
    for n in 0..8u64 {
        scene.render(FrameNo(n), n * 33_333_333, &mut frame);
        writer.write_frame(frame.view()).unwrap();
    }
    writer.finish().unwrap();
}

/// Runs `command` (a round trip with --json) and returns its report.
fn report(command: &mut Command) -> serde_json::Value {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_binary_codes_identically_on_a_cpu_without_avx2() {
    let qemu_there = Command::new(QEMU).arg("--version").output().is_ok();
    assert!(
        qemu_there,
        "{QEMU} is not installed: run `deploy/install-deps.sh test` (Debian's qemu-user)"
    );
    let scratch = TempDir::new("old-cpu");
    let dir = &scratch.0;
    let clip = dir.join("clip.y4m");
    write_clip(&clip);
    let keymash = service_binary("keymash");
    let roundtrip = |out: &Path| {
        let mut args = vec!["codec", "roundtrip", "--quality", "60", "--json"];
        args.extend([clip.to_str().unwrap(), out.to_str().unwrap()]);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let (native_out, old_out) = (dir.join("native.y4m"), dir.join("old.y4m"));
    let native = report(Command::new(&keymash).args(roundtrip(&native_out)));
    let old = report(
        Command::new(QEMU)
            .args(["-cpu", OLD_CPU])
            .arg(&keymash)
            .args(roundtrip(&old_out)),
    );

    assert_eq!(old["simd"], "sse2", "on a {OLD_CPU}: {old}");
    assert_eq!(
        native["simd"],
        Simd::detect().name(),
        "natively the widest unit this CPU has: {native}"
    );
    for same in [
        "frames",
        "bytes_per_frame",
        "payloads_per_frame",
        "psnr_y",
        "bits",
    ] {
        assert_eq!(native[same], old[same], "{same} differs: {native} vs {old}");
    }
    assert!(
        std::fs::read(&native_out).unwrap() == std::fs::read(&old_out).unwrap(),
        "the decoded videos differ"
    );
    println!(
        "native: {}, bytes/frame {}; {OLD_CPU} under qemu: {}, the same bytes and pictures",
        native["simd"], native["bytes_per_frame"], old["simd"]
    );
}
