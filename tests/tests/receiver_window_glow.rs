//! The SDL2 window under a virtual X server (Xvfb): a screenshot of the screen shows the border
//! glowing green in proportion to the mash level, and the picture inside it.
//!
//! Needs `Xvfb` (apt xvfb) and `ffmpeg` with x11grab (apt ffmpeg) for the screenshot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keymash_core::MashLevel;
use keymash_pipeline::{MashRecord, MASH_CELL};
use keymash_shm::{monotonic_now_ns, CellWriter, Permissions};
use keymash_tests::receiver::ReceiverSetup;
use keymash_tests::xvfb::VirtualScreen;

const SCREEN: (usize, usize) = (640, 480);

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
const BORDER: usize = 32;

fn pixel(shot: &[u8], x: usize, y: usize) -> [u8; 3] {
    let at = (y * SCREEN.0 + x) * 3;
    [shot[at], shot[at + 1], shot[at + 2]]
}

/// What is wrong with the screenshot for mash level `level` (border glowing `[0, green, 0]`,
/// the grey picture inside), if anything.
fn mismatch(shot: &[u8], level: f32, green: u8) -> Option<String> {
    for (x, y) in [
        (BORDER / 2, SCREEN.1 / 2),
        (SCREEN.0 / 2, BORDER / 2),
        (SCREEN.0 - 3, SCREEN.1 - 3),
    ] {
        let [r, g, b] = pixel(shot, x, y);
        if !(r <= 2 && b <= 2 && g.abs_diff(green) <= 2) {
            return Some(format!(
                "mash {level}: border pixel ({x},{y}) is {:?}, expected [0, {green}, 0]",
                [r, g, b]
            ));
        }
    }
    // Inside the border: the (not yet streamed) picture, mid-grey, not the glow.
    let [r, g, b] = pixel(shot, SCREEN.0 / 2, SCREEN.1 / 2);
    if !(r.abs_diff(g) <= 8 && g.abs_diff(b) <= 8 && (100..=160).contains(&g)) {
        return Some(format!(
            "mash {level}: centre is {:?}, expected mid-grey",
            [r, g, b]
        ));
    }
    None
}

#[test]
fn the_window_border_glows_green_in_proportion_to_the_mash_level() {
    // A display number of its own: no clash with the other window test running beside it.
    let screen = VirtualScreen::start(SCREEN.0, SCREEN.1, 100);
    let display = screen.display.clone();
    // No stream is sent: the signal-lost card ("no signal yet", the picture dimmed) would cover
    // the grey picture this test expects inside the border after a second, so it is put off
    // beyond the test's length (receiver_signal_lost tests the card).
    let setup = ReceiverSetup::new(
        "rx-window",
        &format!(
            "[display]\noutput = \"window\"\nfullscreen = true\nglow_border_px = {BORDER}\n\
             signal_lost_ms = 60000\n"
        ),
    );
    // The test plays mash-input: it owns the mash cell and keeps it fresh.
    let (mut cell, _) =
        CellWriter::<MashRecord>::open(&setup.segment(MASH_CELL), Permissions::OwnerOnly).unwrap();
    let mut window = setup.start_with_env(
        "keymash-display",
        &[("DISPLAY", &display), ("SDL_VIDEODRIVER", "x11")],
    );

    // What is checked is the glow's colour for each level, not how fast it follows (that is
    // receiver_keypress_to_screen's business): screenshots are taken until the screen shows
    // the level, for at most 10 s, while the cell is kept fresh (mash-input stores it at 50 Hz
    // or more; a level older than the mash window counts as nobody mashing).
    for (level, green) in [(0.25f32, 64u8), (1.0, 255), (0.0, 0)] {
        let record = || MashRecord::new(MashLevel::new(level).unwrap(), 0, 0, monotonic_now_ns());
        let start = Instant::now();
        let keeper_stop = AtomicBool::new(false);
        let problem = std::thread::scope(|s| {
            s.spawn(|| {
                while !keeper_stop.load(Ordering::Relaxed) {
                    cell.store(&record());
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            // Stops the keeper however this side ends: a panic here (a failed screenshot)
            // waits for the keeper before it propagates.
            let _stop_keeper = StopOnDrop(&keeper_stop);
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let problem = mismatch(&screen.screenshot().rgb, level, green);
                if problem.is_none() || start.elapsed() > Duration::from_secs(10) {
                    break problem;
                }
            }
        });
        if let Some(problem) = problem {
            panic!("{problem} (for 10 s)");
        }
        eprintln!(
            "mash {level}: the screen showed it {:?} after the first store",
            start.elapsed()
        );
    }
    let status = window
        .terminate(Duration::from_secs(2))
        .expect("display stops on SIGTERM");
    assert!(status.success());
}
