//! The contact sheet: displayed pictures at low mashing beside pictures at high mashing, each
//! captioned with its figures, as one PNG.

use std::path::Path;

use keymash_core::font::{for_each_lit_pixel, text_width, GLYPH_HEIGHT};

use super::watch::Shown;
use crate::png_file::write_png;

/// Pictures per column.
pub(super) const ROWS: usize = 3;
const PAD: usize = 8;
const TITLE_SCALE: usize = 2;
const TITLE_HEIGHT: usize = GLYPH_HEIGHT * TITLE_SCALE + PAD;
const CAPTION_HEIGHT: usize = GLYPH_HEIGHT + 2 * 4;
const BACKGROUND: [u8; 3] = [24, 24, 24];
const INK: [u8; 3] = [235, 235, 235];

/// The sheet's size for pictures of `width` x `height`.
pub(super) fn size(width: usize, height: usize) -> (usize, usize) {
    (
        PAD + 2 * (width + PAD),
        PAD + TITLE_HEIGHT + ROWS * (height + CAPTION_HEIGHT + PAD),
    )
}

/// `ROWS` pictures spread evenly over `candidates` (all of them if there are fewer).
fn pick(candidates: &[Shown]) -> Vec<&Shown> {
    if candidates.len() <= ROWS {
        return candidates.iter().collect();
    }
    (0..ROWS)
        .map(|i| &candidates[i * (candidates.len() - 1) / (ROWS - 1)])
        .collect()
}

fn caption(shown: &Shown) -> String {
    let mut text = format!(
        "T {:.0}S MASH {:.2}",
        shown.at.as_secs_f64(),
        shown.figures.mash.unwrap_or(0.0)
    );
    if let Some(drop) = shown.figures.drop_percent {
        text += &format!(" DROP {drop:.0}%");
    }
    if let Some(q) = shown.figures.quality {
        text += &format!(" Q {q}");
    }
    if let Some(psnr) = shown.psnr {
        text += &format!(" PSNR {psnr:.1}");
    }
    text
}

/// An RGB image being drawn.
struct Canvas {
    width: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    fn put(&mut self, x: usize, y: usize, colour: [u8; 3]) {
        let at = (y * self.width + x) * 3;
        if let Some(px) = self.rgb.get_mut(at..at + 3) {
            px.copy_from_slice(&colour);
        }
    }

    fn text(&mut self, x: usize, y: usize, text: &str, scale: usize) {
        for_each_lit_pixel(text, |fx, fy| {
            for dy in 0..scale {
                for dx in 0..scale {
                    self.put(x + fx * scale + dx, y + fy * scale + dy, INK);
                }
            }
        });
    }

    fn picture(&mut self, x: usize, y: usize, shown: &Shown) {
        let mut rgb = Vec::new();
        keymash_present::i420_to_rgb(shown.picture.view(), &mut rgb);
        let w = shown.picture.geometry().width();
        for (row, line) in rgb.chunks_exact(w * 3).enumerate() {
            let at = ((y + row) * self.width + x) * 3;
            if let Some(dst) = self.rgb.get_mut(at..at + w * 3) {
                dst.copy_from_slice(line);
            }
        }
    }
}

/// Draws the sheet for pictures of `width` x `height` and writes it to `path` as PNG.
pub(super) fn write(
    path: &Path,
    width: usize,
    height: usize,
    low: &[Shown],
    high: &[Shown],
) -> anyhow::Result<()> {
    let (sheet_w, sheet_h) = size(width, height);
    let mut canvas = Canvas {
        width: sheet_w,
        rgb: BACKGROUND.repeat(sheet_w * sheet_h),
    };
    for (column, (title, shown)) in [("LOW MASHING", low), ("HIGH MASHING", high)]
        .into_iter()
        .enumerate()
    {
        let x = PAD + column * (width + PAD);
        let title_x = x + width.saturating_sub(text_width(title) * TITLE_SCALE) / 2;
        canvas.text(title_x, PAD, title, TITLE_SCALE);
        let picked = pick(shown);
        for row in 0..ROWS {
            let y = PAD + TITLE_HEIGHT + row * (height + CAPTION_HEIGHT + PAD);
            match picked.get(row) {
                Some(shown) => {
                    canvas.picture(x, y, shown);
                    canvas.text(x, y + height + 4, &caption(shown), 1);
                }
                None => canvas.text(x + PAD, y + height / 2, "NO PICTURE AT THIS LEVEL", 1),
            }
        }
    }
    write_png(path, sheet_w, sheet_h, &canvas.rgb)
}
