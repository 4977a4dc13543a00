//! A virtual X server (Xvfb) for tests of the display's SDL2 window, and screenshots of it
//! through ffmpeg's x11grab.
//!
//! Needs `Xvfb` (apt xvfb) and `ffmpeg` with x11grab (apt ffmpeg); `deploy/install-deps.sh test`
//! installs both.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keymash_testbed::ChildGuard;

/// A running Xvfb with one screen of `width` x `height` at 24 bits; stopped on drop.
#[derive(Debug)]
pub struct VirtualScreen {
    _xvfb: ChildGuard,
    /// The X display name (`:N`), for `DISPLAY`.
    pub display: String,
    pub width: usize,
    pub height: usize,
}

/// A screenshot: the whole screen as packed RGB.
#[derive(Debug, Clone)]
pub struct Screenshot {
    pub rgb: Vec<u8>,
    pub width: usize,
}

impl Screenshot {
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let at = (y * self.width + x) * 3;
        [self.rgb[at], self.rgb[at + 1], self.rgb[at + 2]]
    }
}

impl VirtualScreen {
    /// Starts Xvfb on display `:base + pid % 800`: tests that run at the same time pass
    /// different bases (100, 1000, ...) so their display numbers never clash.
    pub fn start(width: usize, height: usize, base: u32) -> VirtualScreen {
        let number = base + std::process::id() % 800;
        let display = format!(":{number}");
        let xvfb = ChildGuard::spawn(
            "Xvfb",
            Command::new("Xvfb")
                .arg(&display)
                .args([
                    "-screen",
                    "0",
                    &format!("{width}x{height}x24"),
                    "-nolisten",
                    "tcp",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("start Xvfb (apt install xvfb)");
        let socket = format!("/tmp/.X11-unix/X{number}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&socket).exists() {
            assert!(
                Instant::now() < deadline,
                "Xvfb did not come up on {display}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        VirtualScreen {
            _xvfb: xvfb,
            display,
            width,
            height,
        }
    }

    /// The whole screen now, through ffmpeg's x11grab (given 30 s: it takes well under one; only
    /// a wedged X server takes longer).
    pub fn screenshot(&self) -> Screenshot {
        let out = Command::new("timeout")
            .args(["--kill-after=5", "30", "ffmpeg"])
            .args([
                "-loglevel",
                "error",
                "-f",
                "x11grab",
                "-video_size",
                &format!("{}x{}", self.width, self.height),
            ])
            .args([
                "-i",
                &self.display,
                "-frames:v",
                "1",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-",
            ])
            .output()
            .expect("run ffmpeg (apt install ffmpeg)");
        assert!(
            out.status.success(),
            "ffmpeg x11grab failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout.len(), self.width * self.height * 3);
        Screenshot {
            rgb: out.stdout,
            width: self.width,
        }
    }
}
