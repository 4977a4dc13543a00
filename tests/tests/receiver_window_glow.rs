//! The SDL2 window under a virtual X server (Xvfb): a screenshot of the screen shows the border
//! glowing green in proportion to the mash level, and the picture inside it.
//!
//! Needs `Xvfb` (apt xvfb) and `ffmpeg` with x11grab (apt ffmpeg) for the screenshot.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keymash_core::pipeline::{MashRecord, MASH_CELL};
use keymash_core::MashLevel;
use keymash_shm::{monotonic_now_ns, CellWriter, Permissions};
use keymash_tests::receiver::ReceiverSetup;
use keymash_tests::ChildGuard;

const SCREEN: (usize, usize) = (640, 480);
const BORDER: usize = 32;

/// A virtual X server on a display number derived from the pid (no clash with parallel runs).
fn start_xvfb() -> (ChildGuard, String) {
    let number = 100 + std::process::id() % 800;
    let display = format!(":{number}");
    let guard = ChildGuard::spawn(
        "Xvfb",
        Command::new("Xvfb")
            .arg(&display)
            .args(["-screen", "0", &format!("{}x{}x24", SCREEN.0, SCREEN.1), "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("start Xvfb (apt install xvfb)");
    let socket = format!("/tmp/.X11-unix/X{number}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Path::new(&socket).exists() {
        assert!(Instant::now() < deadline, "Xvfb did not come up on {display}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (guard, display)
}

/// The whole screen as packed RGB, through ffmpeg's x11grab.
fn screenshot(display: &str) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-f", "x11grab", "-video_size", &format!("{}x{}", SCREEN.0, SCREEN.1)])
        .args(["-i", display, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("run ffmpeg (apt install ffmpeg)");
    assert!(out.status.success(), "ffmpeg x11grab failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), SCREEN.0 * SCREEN.1 * 3);
    out.stdout
}

fn pixel(shot: &[u8], x: usize, y: usize) -> [u8; 3] {
    let at = (y * SCREEN.0 + x) * 3;
    [shot[at], shot[at + 1], shot[at + 2]]
}

#[test]
fn the_window_border_glows_green_in_proportion_to_the_mash_level() {
    let (_xvfb, display) = start_xvfb();
    let setup = ReceiverSetup::new(
        "rx-window",
        &format!("[display]\noutput = \"window\"\nfullscreen = true\nglow_border_px = {BORDER}\n"),
    );
    // The test plays mash-input: it owns the mash cell and keeps it fresh.
    let (mut cell, _) = CellWriter::<MashRecord>::open(&setup.segment(MASH_CELL), Permissions::OwnerOnly).unwrap();
    let mut window = setup.start_with_env("keymash-display", &[("DISPLAY", &display), ("SDL_VIDEODRIVER", "x11")]);

    for (level, green) in [(0.25f32, 64u8), (1.0, 255), (0.0, 0)] {
        let until = Instant::now() + Duration::from_millis(600);
        while Instant::now() < until {
            cell.store(&MashRecord::new(MashLevel::new(level).unwrap(), 0, 0, monotonic_now_ns()));
            std::thread::sleep(Duration::from_millis(20));
        }
        let shot = screenshot(&display);
        cell.store(&MashRecord::new(MashLevel::new(level).unwrap(), 0, 0, monotonic_now_ns()));
        for (x, y) in [(BORDER / 2, SCREEN.1 / 2), (SCREEN.0 / 2, BORDER / 2), (SCREEN.0 - 3, SCREEN.1 - 3)] {
            let [r, g, b] = pixel(&shot, x, y);
            assert!(
                r <= 2 && b <= 2 && g.abs_diff(green) <= 2,
                "mash {level}: border pixel ({x},{y}) is {:?}, expected [0, {green}, 0]",
                [r, g, b]
            );
        }
        // Inside the border: the (not yet streamed) picture, mid-grey, not the glow.
        let [r, g, b] = pixel(&shot, SCREEN.0 / 2, SCREEN.1 / 2);
        assert!(r.abs_diff(g) <= 8 && g.abs_diff(b) <= 8 && (100..=160).contains(&g), "centre is {:?}", [r, g, b]);
    }
    let status = window.terminate(Duration::from_secs(2)).expect("display stops on SIGTERM");
    assert!(status.success());
}
