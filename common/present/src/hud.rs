//! The one-line HUD (loss %, quality, fps, mash level), drawn in keymash-media's built-in 5x7
//! font (the one the countdown card uses): no font files or text-rendering library on the
//! exhibit PC, and the same pixels in the SDL window and in the headless outputs. The font has
//! capitals only, so the line shows in capitals.

pub use keymash_core::font::{glyph, GLYPH_HEIGHT, GLYPH_WIDTH, SPACING as GLYPH_SPACING};
use keymash_core::{MashLevel, Quality};

/// Luma of the HUD's ink and of the box behind it (limited-range white and black).
const INK_LUMA: u8 = 235;
const BOX_LUMA: u8 = 16;

/// The figures the HUD shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HudFigures {
    /// Packet loss over the last second as net-rx measures it; `None` while net-rx is silent.
    pub loss_percent: Option<f64>,
    /// The quality the mash level asks the sender for.
    pub quality: Quality,
    /// Frames presented per second.
    pub fps: f64,
    pub mash: MashLevel,
}

impl HudFigures {
    /// `loss 12.3% q45 30.0fps mash 0.52`: only characters the built-in font has.
    pub fn line(&self) -> String {
        let loss = self
            .loss_percent
            .map_or_else(|| "-".to_owned(), |l| format!("{l:.1}"));
        format!(
            "loss {loss}% q{} {:.1}fps mash {:.2}",
            self.quality.get(),
            self.fps,
            self.mash.get()
        )
    }
}

/// Width in pixels of `text` drawn at `scale`.
pub fn text_width(text: &str, scale: usize) -> usize {
    text.chars().count() * (GLYPH_WIDTH + GLYPH_SPACING) * scale
}

/// Draws `text` into an 8-bit plane (`width` x `height`, rows packed) at (`x`, `y`), light ink
/// on a dark box one font pixel larger than the text, each font pixel `scale` plane pixels.
/// Characters the font lacks are drawn as blanks; whatever falls outside the plane is clipped.
pub fn draw_text(
    plane: &mut [u8],
    width: usize,
    height: usize,
    x: usize,
    y: usize,
    text: &str,
    scale: usize,
) {
    let scale = scale.max(1);
    let box_w = text_width(text, scale) + 2 * scale;
    let box_h = (GLYPH_HEIGHT + 2) * scale;
    let mut put = |px: usize, py: usize, value: u8| {
        if px < width && py < height {
            if let Some(p) = plane.get_mut(py * width + px) {
                *p = value;
            }
        }
    };
    for by in 0..box_h {
        for bx in 0..box_w {
            put(x + bx, y + by, BOX_LUMA);
        }
    }
    for (i, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        let gx = x + scale + i * (GLYPH_WIDTH + GLYPH_SPACING) * scale;
        let gy = y + scale;
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..GLYPH_WIDTH {
                if bits & (0x10 >> col) != 0 {
                    for sy in 0..scale {
                        for sx in 0..scale {
                            put(gx + col * scale + sx, gy + row * scale + sy, INK_LUMA);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_character_of_a_hud_line_has_a_glyph() {
        let figures = HudFigures {
            loss_percent: Some(37.24),
            quality: Quality::new(45).unwrap(),
            fps: 29.97,
            mash: MashLevel::new(0.5).unwrap(),
        };
        let line = figures.line();
        assert_eq!(line, "loss 37.2% q45 30.0fps mash 0.50");
        for c in line.chars().chain("0123456789-".chars()) {
            assert!(glyph(c).is_some(), "no glyph for {c:?}");
        }
        assert_eq!(
            HudFigures {
                loss_percent: None,
                ..figures
            }
            .line(),
            "loss -% q45 30.0fps mash 0.50"
        );
    }

    #[test]
    fn text_is_drawn_as_ink_on_a_box_and_clipped_at_the_edges() {
        let (w, h) = (64, 16);
        let mut plane = vec![128u8; w * h];
        draw_text(&mut plane, w, h, 0, 0, "1", 1);
        // The box covers (0,0)..(7,9); "1" has ink in its top row at column 2 of the glyph.
        assert_eq!(plane[w + 1 + 2], INK_LUMA);
        assert_eq!(plane[0], BOX_LUMA);
        assert_eq!(plane[10 * w], 128, "below the box is untouched");
        let ink = plane.iter().filter(|&&p| p == INK_LUMA).count();
        let expected: u32 = glyph('1').unwrap().iter().map(|r| r.count_ones()).sum();
        assert_eq!(ink, expected as usize);
        // Off the right edge: must not panic or wrap into the next row.
        let mut small = vec![128u8; 8 * 8];
        draw_text(&mut small, 8, 8, 6, 6, "88", 2);
        assert_eq!(small[8], 128, "row 1 is untouched: no wrap-around");
    }
}
