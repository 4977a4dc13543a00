//! The SDL2 window under a virtual X server (Xvfb) shows the signal-lost card as it shows a
//! frame: with no stream at all (and no net-rx), a screenshot shows the picture dimmed from
//! mid-grey and light text on a dark box across the middle, the border still glowing.
//!
//! Needs `Xvfb` (apt xvfb) and `ffmpeg` with x11grab (apt ffmpeg) for the screenshot, as
//! receiver_window_glow does.

use std::time::{Duration, Instant};

use keymash_tests::receiver::ReceiverSetup;
use keymash_tests::xvfb::VirtualScreen;

const SCREEN: (usize, usize) = (640, 480);
const BORDER: usize = 32;

fn pixel(shot: &[u8], x: usize, y: usize) -> [u8; 3] {
    let at = (y * SCREEN.0 + x) * 3;
    [shot[at], shot[at + 1], shot[at + 2]]
}

/// What keeps the screenshot from being the card, if anything. The 320x240 picture is scaled
/// into the 576x416 inside of the border (554x416 at x 43); the card's two lines lie in picture
/// rows 104-135, screen rows 212-266.
fn not_the_card(shot: &[u8]) -> Option<String> {
    // Above the text: mid-grey (128) dimmed to a quarter of its contrast, luma 44: RGB about 33.
    let [r, g, b] = pixel(shot, SCREEN.0 / 2, 136);
    if !(r.abs_diff(g) <= 6 && g.abs_diff(b) <= 6 && (15..=55).contains(&g)) {
        return Some(format!(
            "above the text the picture is {:?}, not dimmed grey",
            [r, g, b]
        ));
    }
    let (mut ink, mut boxed) = (0, 0);
    for y in 212..=266 {
        for x in 43..43 + 554 {
            let p = pixel(shot, x, y);
            ink += usize::from(p.iter().all(|&c| c >= 200));
            boxed += usize::from(p.iter().all(|&c| c <= 20));
        }
    }
    if ink < 200 || boxed < 2000 {
        return Some(format!(
            "the text band has {ink} light and {boxed} dark pixels: no text box"
        ));
    }
    // The border still glows (black: nobody mashing, no mash cell).
    let [r, g, b] = pixel(shot, BORDER / 2, SCREEN.1 / 2);
    if r > 2 || g > 2 || b > 2 {
        return Some(format!("the border is {:?}, not black", [r, g, b]));
    }
    None
}

#[test]
fn the_window_shows_the_signal_lost_card_when_no_video_comes() {
    // A display number of its own: no clash with the other window test running beside it.
    let screen = VirtualScreen::start(SCREEN.0, SCREEN.1, 1000);
    let display = screen.display.clone();
    let setup = ReceiverSetup::new(
        "rx-window-card",
        &format!(
            "[display]\noutput = \"window\"\nfullscreen = true\nglow_border_px = {BORDER}\n\
             signal_lost_ms = 500\n"
        ),
    );
    let mut window = setup.start_with_env(
        "keymash-display",
        &[("DISPLAY", &display), ("SDL_VIDEODRIVER", "x11")],
    );
    // Screenshots until the card shows, for at most 10 s (it should after half a second).
    let start = Instant::now();
    let problem = loop {
        std::thread::sleep(Duration::from_millis(100));
        let problem = not_the_card(&screen.screenshot().rgb);
        if problem.is_none() || start.elapsed() > Duration::from_secs(10) {
            break problem;
        }
    };
    if let Some(problem) = problem {
        panic!("{problem} (for 10 s)");
    }
    eprintln!(
        "the window showed the card {:?} after the display started",
        start.elapsed()
    );
    let status = window
        .terminate(Duration::from_secs(2))
        .expect("display stops on SIGTERM");
    assert!(status.success());
}
