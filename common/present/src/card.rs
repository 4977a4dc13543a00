//! The signal-lost card: the last picture dimmed to a quarter of its contrast and colour, with
//! lines of text in the middle (what happened, then why). Dimmed rather than blanked, so that
//! the exhibit still looks like itself; the text box is the same ink-on-box the HUD uses, so it
//! reads on any picture.
//!
//! The card is a picture of the stream's size; every output then composes it as it would a
//! frame (the glow border, the HUD), so the window and the headless outputs show the same.

use keymash_codec::{I420Frame, I420View};

use crate::hud::{draw_text, text_width, GLYPH_HEIGHT};

/// Luma and chroma are pulled towards black and grey by this shift (a quarter of the contrast).
pub const CARD_DIM_SHIFT: u32 = 2;
/// The brightest luma of a dimmed picture: limited-range white dimmed.
pub const CARD_DIM_MAX_LUMA: u8 = 16 + ((235 - 16) >> CARD_DIM_SHIFT) as u8;

/// A sample of the picture as the card shows it: `black + (v - black) / 4`, with 16 the black of
/// luma and 128 the neutral of chroma.
fn dim(v: u8, black: u8) -> u8 {
    let (v, black) = (i32::from(v), i32::from(black));
    (black + ((v - black) >> CARD_DIM_SHIFT)).clamp(0, 255) as u8
}

/// Where each of `lines` is drawn on a card `width` x `height`: `(x, y, scale)` of its text box,
/// centred horizontally, the block of lines centred vertically. Each line's scale is the
/// largest (up to the HUD's at that width, doubled) at which it still fits the width.
pub fn card_layout(width: usize, height: usize, lines: &[&str]) -> Vec<(usize, usize, usize)> {
    let max_scale = (width / 640).max(1) * 4;
    let scales: Vec<usize> = lines
        .iter()
        .map(|line| {
            (1..=max_scale)
                .rev()
                .find(|&s| text_width(line, s) + 2 * s <= width)
                .unwrap_or(1)
        })
        .collect();
    // Box height, then a gap of half a box between lines.
    let heights: Vec<usize> = scales.iter().map(|s| (GLYPH_HEIGHT + 2) * s).collect();
    let gap = heights.first().map_or(0, |h| h / 2);
    let total = heights.iter().sum::<usize>() + gap * lines.len().saturating_sub(1);
    let mut y = height.saturating_sub(total) / 2;
    lines
        .iter()
        .zip(scales.iter().zip(&heights))
        .map(|(line, (&scale, &h))| {
            let w = text_width(line, scale) + 2 * scale;
            let x = width.saturating_sub(w) / 2;
            let at = (x, y, scale);
            y += h + gap;
            at
        })
        .collect()
}

/// Composes the card into `card` (a picture of `picture`'s geometry): `picture` dimmed, with
/// `lines` drawn as [`card_layout`] places them. A card of another size is left untouched and
/// `false` returned.
pub fn compose_card(picture: I420View<'_>, lines: &[&str], card: &mut I420Frame) -> bool {
    let g = picture.geometry();
    if card.geometry() != g {
        return false;
    }
    let (y, u, v) = card.planes_mut();
    for (dst, &src) in y.iter_mut().zip(picture.y()) {
        *dst = dim(src, 16);
    }
    for (dst, &src) in u
        .iter_mut()
        .zip(picture.u())
        .chain(v.iter_mut().zip(picture.v()))
    {
        *dst = dim(src, 128);
    }
    for (line, (x, ty, scale)) in lines.iter().zip(card_layout(g.width(), g.height(), lines)) {
        draw_text(y, g.width(), g.height(), x, ty, line, scale);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymash_codec::FrameGeometry;

    fn bright_picture(geometry: FrameGeometry) -> I420Frame {
        I420Frame::from_planes(
            geometry,
            vec![235; geometry.luma_len()],
            vec![240; geometry.chroma_len()],
            vec![16; geometry.chroma_len()],
        )
        .unwrap()
    }

    #[test]
    fn the_card_is_the_picture_dimmed_with_the_lines_in_the_middle() {
        let g = FrameGeometry::new(320, 240).unwrap();
        let picture = bright_picture(g);
        let mut card = I420Frame::grey(g);
        let lines = [
            "SIGNAL LOST - RECONNECTING",
            "SENDER SILENT - NO PACKETS ARRIVE",
        ];
        assert!(compose_card(picture.view(), &lines, &mut card));
        let layout = card_layout(320, 240, &lines);
        let inside = |px: usize, py: usize| {
            layout.iter().zip(lines).any(|(&(x, y, s), line)| {
                (x..x + text_width(line, s) + 2 * s).contains(&px)
                    && (y..y + (GLYPH_HEIGHT + 2) * s).contains(&py)
            })
        };
        let mut ink = 0;
        for py in 0..240 {
            for px in 0..320 {
                let luma = card.y()[py * 320 + px];
                if inside(px, py) {
                    assert!(luma == 16 || luma == 235, "box pixel {luma}");
                    ink += usize::from(luma == 235);
                } else {
                    assert_eq!(luma, CARD_DIM_MAX_LUMA, "dimmed at ({px},{py})");
                }
            }
        }
        assert!(ink > 100, "the lines have ink ({ink} pixels)");
        assert_eq!(card.u()[0], 128 + (112 >> CARD_DIM_SHIFT));
        assert_eq!(card.v()[0], 128 - (112 >> CARD_DIM_SHIFT));
        // Centred: the box of the first line is as far from the left as from the right.
        let (x, _, s) = layout[0];
        let w = text_width(lines[0], s) + 2 * s;
        assert!(x.abs_diff(320 - x - w) <= 1);
        assert!(layout[1].1 > layout[0].1, "the reason is under the title");
        // A card of another size is refused, not half-written.
        let mut wrong = I420Frame::grey(FrameGeometry::new(64, 48).unwrap());
        assert!(!compose_card(picture.view(), &lines, &mut wrong));
    }

    #[test]
    fn long_lines_shrink_to_fit_narrow_pictures() {
        for width in [64usize, 160, 320, 640, 1920] {
            let line = "NO SIGNAL YET - WAITING FOR THE SENDER";
            let (x, _, s) = card_layout(width, 480, &[line])[0];
            let w = text_width(line, s) + 2 * s;
            assert!(s == 1 || x + w <= width, "{width}: scale {s} overflows");
        }
        assert_eq!(card_layout(1920, 1080, &["A"])[0].2, 12);
        assert_eq!(
            card_layout(320, 240, &["SIGNAL LOST - RECONNECTING"])[0].2,
            2
        );
    }
}
