//! `keymash codec roundtrip` from the outside: a generated Y4M through the real binary.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule)

use keymash_codec::y4m::{Y4mHeader, Y4mReader, Y4mWriter};
use keymash_codec::{FrameGeometry, I420Frame};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small moving test video: gradient, moving bar, coloured chroma.
fn write_video(path: &Path, geometry: FrameGeometry, frames: usize) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = Y4mWriter::new(file, &Y4mHeader::new(geometry, "30:1")).unwrap();
    for f in 0..frames {
        let mut frame = I420Frame::grey(geometry);
        let width = geometry.width();
        let (y, u, v) = frame.planes_mut();
        for (i, p) in y.iter_mut().enumerate() {
            let (x, r) = (i % width, i / width);
            let bar = if (x + 8 * f) % 64 < 12 { 90 } else { 0 };
            *p = ((x + 2 * r) % 160 + bar) as u8;
        }
        u.iter_mut()
            .enumerate()
            .for_each(|(i, p)| *p = (100 + i % 50) as u8);
        v.iter_mut()
            .enumerate()
            .for_each(|(i, p)| *p = (150 - i % 40) as u8);
        w.write_frame(frame.view()).unwrap();
    }
    w.finish().unwrap();
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keymash-codec-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn keymash() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keymash"))
}

#[test]
fn roundtrip_json_reports_frames_size_and_psnr_and_writes_the_decoded_video() {
    let dir = scratch("json");
    let (input, output) = (dir.join("in.y4m"), dir.join("out.y4m"));
    let geometry = FrameGeometry::new(160, 96).unwrap();
    write_video(&input, geometry, 4);
    let mut psnrs = Vec::new();
    for (quality, layout) in [("20", "strips"), ("90", "dispersed")] {
        let out = keymash()
            .args([
                "codec",
                "roundtrip",
                "--quality",
                quality,
                "--layout",
                layout,
                "--json",
            ])
            .arg(&input)
            .arg(&output)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["frames"], 4);
        assert!(report["bytes_per_frame"].as_f64().unwrap() > 0.0);
        let psnr_y = report["psnr_y"].as_f64().unwrap();
        assert!(
            psnr_y > 25.0 && report["psnr_yuv"].as_f64().unwrap() > 25.0,
            "{report}"
        );
        psnrs.push(psnr_y);
        for timed in ["encode_ms", "decode_ms"] {
            let (p50, p99) = (
                report[timed]["p50"].as_f64().unwrap(),
                report[timed]["p99"].as_f64().unwrap(),
            );
            assert!(
                p50 > 0.0 && p99 >= p50 && p99 < 10_000.0,
                "{timed}: {report}"
            );
        }
        let mut reader = Y4mReader::new(std::fs::File::open(&output).unwrap()).unwrap();
        assert_eq!(reader.header().geometry, geometry);
        let mut frame = I420Frame::grey(geometry);
        let mut frames = 0;
        while reader.read_frame(&mut frame).unwrap() {
            frames += 1;
        }
        assert_eq!(frames, 4);
    }
    assert!(psnrs[1] > psnrs[0] + 3.0, "{psnrs:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn roundtrip_prints_a_table_without_json() {
    let dir = scratch("table");
    let input = dir.join("in.y4m");
    write_video(&input, FrameGeometry::new(64, 48).unwrap(), 2);
    let out = keymash()
        .args(["codec", "roundtrip", "--quality", "50"])
        .arg(&input)
        .arg(dir.join("out.y4m"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "2 frames 64x48",
        "bytes/frame",
        "PSNR Y",
        "PSNR YUV",
        "encode ms/frame",
        "decode ms/frame",
        "where the bytes go",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn roundtrip_refuses_bad_input_and_bad_quality_with_a_message() {
    let dir = scratch("bad");
    let input = dir.join("in.y4m");
    std::fs::write(&input, b"YUV4MPEG2 W64 H48 F30:1 C444\nFRAME\n").unwrap();
    let out = keymash()
        .args(["codec", "roundtrip", "--quality", "50"])
        .arg(&input)
        .arg(dir.join("o.y4m"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("C444"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = keymash()
        .args(["codec", "roundtrip", "--quality", "0"])
        .arg(&input)
        .arg(dir.join("o.y4m"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let missing = keymash()
        .args(["codec", "roundtrip", "--quality", "50"])
        .arg(dir.join("nope.y4m"))
        .arg(dir.join("o.y4m"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.y4m"));
    std::fs::remove_dir_all(&dir).unwrap();
}
