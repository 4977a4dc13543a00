//! The delay buffer's cards. The countdown card is what it shows until it holds enough video: a
//! visitor sees "STARTING IN" and the seconds left in large digits over a filling progress bar,
//! never a frozen or garbage picture. The waiting card is what it shows while no video arrives
//! at all (the camera unplugged): there is nothing to count down to, so it says so.

use keymash_codec::I420Frame;

use crate::paint::fill_rect;
use keymash_core::font::{for_each_lit_pixel, text_width, GLYPH_HEIGHT};

const BACKGROUND: (u8, u8, u8) = (40, 150, 118); // dark blue
const TEXT: (u8, u8, u8) = (225, 128, 128); // near white
const BAR_EMPTY: (u8, u8, u8) = (70, 140, 120);
const BAR_FULL: (u8, u8, u8) = (150, 90, 80); // green

/// Renders the card into `out`: `seconds_left` (whole seconds, as shown) of `total_seconds`.
pub fn render_countdown(out: &mut I420Frame, seconds_left: u32, total_seconds: u32) {
    let geometry = out.geometry();
    let (w, h) = (geometry.width(), geometry.height());
    fill_rect(out, 0, 0, w, h, BACKGROUND);
    // Headline at a twelfth of the height per text line; digits twice as large.
    let small = (h / 12 / GLYPH_HEIGHT).max(1);
    let large = 2 * small;
    let headline = "STARTING IN";
    let count = format!("{seconds_left} S");
    let mut y = h / 4;
    draw_text(
        out,
        headline,
        w.saturating_sub(text_width(headline) * small) / 2,
        y,
        small,
    );
    y += GLYPH_HEIGHT * small * 2;
    draw_text(
        out,
        &count,
        w.saturating_sub(text_width(&count) * large) / 2,
        y,
        large,
    );
    y += GLYPH_HEIGHT * large + GLYPH_HEIGHT * small;
    // Progress: how much of the delay is filled.
    let (bar_x, bar_w, bar_h) = (w / 8, w * 3 / 4, (h / 24).max(2));
    fill_rect(out, bar_x, y, bar_w, bar_h, BAR_EMPTY);
    let done = total_seconds.saturating_sub(seconds_left);
    let filled = if total_seconds == 0 {
        bar_w
    } else {
        bar_w * done as usize / total_seconds as usize
    };
    fill_rect(out, bar_x, y, filled.min(bar_w), bar_h, BAR_FULL);
}

/// Renders the waiting card into `out`: no video is arriving; the picture returns
/// `delay_seconds` after it does.
pub fn render_awaiting_video(out: &mut I420Frame, delay_seconds: u32) {
    let geometry = out.geometry();
    let (w, h) = (geometry.width(), geometry.height());
    fill_rect(out, 0, 0, w, h, BACKGROUND);
    let small = (h / 12 / GLYPH_HEIGHT).max(1);
    let large = 2 * small;
    let footnote = (small / 2).max(1);
    let lines = [
        ("WAITING FOR", small),
        ("THE CAMERA", large),
        (
            &*if delay_seconds == 0 {
                "THE PICTURE RETURNS WITH IT".to_owned()
            } else {
                format!("THE PICTURE RETURNS {delay_seconds} S AFTER IT")
            },
            footnote,
        ),
    ];
    let mut y = h / 4;
    for (text, scale) in lines {
        draw_text(
            out,
            text,
            w.saturating_sub(text_width(text) * scale) / 2,
            y,
            scale,
        );
        y += GLYPH_HEIGHT * scale + GLYPH_HEIGHT * small;
    }
}

fn draw_text(out: &mut I420Frame, text: &str, x0: usize, y0: usize, scale: usize) {
    for_each_lit_pixel(text, |x, y| {
        fill_rect(out, x0 + x * scale, y0 + y * scale, scale, scale, TEXT)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymash_codec::FrameGeometry;

    fn lit_luma(frame: &I420Frame) -> usize {
        frame.y().iter().filter(|&&p| p == TEXT.0).count()
    }

    #[test]
    fn the_card_shows_text_and_differs_per_second() {
        let geometry = FrameGeometry::new(640, 480).unwrap();
        let mut pictures = Vec::new();
        for left in [30, 29, 5] {
            let mut frame = I420Frame::grey(geometry);
            render_countdown(&mut frame, left, 30);
            assert!(lit_luma(&frame) > 1000, "{left}: text too small to read");
            assert!(
                frame.y().iter().all(|&p| p != 128),
                "{left}: grey left showing"
            );
            pictures.push(frame);
        }
        assert_ne!(pictures[0], pictures[1]);
        assert_ne!(pictures[1], pictures[2]);
    }

    #[test]
    fn the_progress_bar_fills_as_the_countdown_runs() {
        let geometry = FrameGeometry::new(320, 240).unwrap();
        let bar_pixels = |left| {
            let mut frame = I420Frame::grey(geometry);
            render_countdown(&mut frame, left, 10);
            frame.y().iter().filter(|&&p| p == BAR_FULL.0).count()
        };
        assert_eq!(bar_pixels(10), 0);
        assert!(bar_pixels(5) > 0);
        assert!(bar_pixels(0) > bar_pixels(5));
    }

    #[test]
    fn the_card_fits_tiny_frames_without_panicking() {
        let mut frame = I420Frame::grey(FrameGeometry::new(16, 16).unwrap());
        render_countdown(&mut frame, 123, 0);
        render_awaiting_video(&mut frame, 30);
    }

    #[test]
    fn the_waiting_card_is_readable_and_unlike_any_countdown() {
        let geometry = FrameGeometry::new(640, 480).unwrap();
        let mut waiting = I420Frame::grey(geometry);
        render_awaiting_video(&mut waiting, 30);
        assert!(lit_luma(&waiting) > 1000, "text too small to read");
        assert!(waiting.y().iter().all(|&p| p != 128), "grey left showing");
        for left in [0, 1, 30] {
            let mut countdown = I420Frame::grey(geometry);
            render_countdown(&mut countdown, left, 30);
            assert_ne!(countdown, waiting, "{left}");
        }
        let mut without_delay = I420Frame::grey(geometry);
        render_awaiting_video(&mut without_delay, 0);
        assert_ne!(without_delay, waiting);
    }
}
