//! Composition: the decoded picture fitted into the output with its aspect kept, inside a
//! border that glows green with the mash level, with the optional HUD on top.
//!
//! The SDL window does the scaling on the GPU and only needs [`fit_inside`] and [`glow_rgb`];
//! the headless outputs (`frames:DIR`, `y4m:PATH`) get the whole picture from
//! [`compose_headless`]: a canvas the picture's size plus the border on every side, the picture
//! copied 1:1 into its middle (so tests can compare it with the source sample for sample).

use keymash_codec::{FrameGeometry, GeometryError, I420Frame, I420View};
use keymash_core::MashLevel;

use crate::hud::draw_text;

/// Pixels the HUD keeps from the picture's corner.
const HUD_MARGIN: usize = 4;

/// A rectangle in output pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The largest rectangle of the aspect `content_width:content_height` that fits in `area`,
/// centred (letterboxed or pillarboxed), with even sides so 4:2:0 chroma stays aligned.
/// An empty area or content gives an empty rectangle at the area's corner.
pub fn fit_inside(area: Rect, content_width: u32, content_height: u32) -> Rect {
    if area.width == 0 || area.height == 0 || content_width == 0 || content_height == 0 {
        return Rect {
            x: area.x,
            y: area.y,
            width: 0,
            height: 0,
        };
    }
    let (aw, ah, cw, ch) = (
        u64::from(area.width),
        u64::from(area.height),
        u64::from(content_width),
        u64::from(content_height),
    );
    // Width-limited if the area is relatively taller than the content.
    let (w, h) = if aw * ch <= ah * cw {
        (aw, aw * ch / cw)
    } else {
        (ah * cw / ch, ah)
    };
    let (w, h) = ((w & !1) as u32, (h & !1) as u32);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// The part of a `width` x `height` output inside a `border` on every side.
pub fn inside_border(width: u32, height: u32, border: u32) -> Rect {
    let b = border.min(width / 2).min(height / 2);
    Rect {
        x: b,
        y: b,
        width: width - 2 * b,
        height: height - 2 * b,
    }
}

/// The glow's colour at `level`: black with nobody mashing, full green at saturation, linear
/// in between (the eye reads the brightness of green almost linearly at these levels).
pub fn glow_rgb(level: MashLevel) -> [u8; 3] {
    [
        0,
        (f32::from(level) * 255.0).round().clamp(0.0, 255.0) as u8,
        0,
    ]
}

/// BT.601 limited-range Y'CbCr of an sRGB colour (what the I420 outputs carry).
pub fn rgb_to_ycbcr([r, g, b]: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (f64::from(r), f64::from(g), f64::from(b));
    let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
    let cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
    let cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
    [y, cb, cr].map(|v| v.round().clamp(0.0, 255.0) as u8)
}

/// The headless canvas for pictures of `picture`: the border is rounded up to a multiple of 8
/// so the canvas stays a codec geometry (multiples of 16), which Y4M output and the PSNR tools
/// share. Returns the canvas and the border actually used.
pub fn headless_canvas(
    picture: FrameGeometry,
    border_px: u32,
) -> Result<(FrameGeometry, usize), GeometryError> {
    let border = (border_px as usize).div_ceil(8) * 8;
    let canvas = FrameGeometry::new(picture.width() + 2 * border, picture.height() + 2 * border)?;
    Ok((canvas, border))
}

/// Composes the headless picture into `canvas` (made with [`headless_canvas`]'s geometry):
/// the glow border at `level`, `picture` 1:1 inside it, and `hud` (if any) in its top-left
/// corner. A canvas of another size is left untouched and `false` returned.
pub fn compose_headless(
    picture: I420View<'_>,
    level: MashLevel,
    border: usize,
    hud: Option<&str>,
    canvas: &mut I420Frame,
) -> bool {
    let pg = picture.geometry();
    let cg = canvas.geometry();
    if cg.width() != pg.width() + 2 * border
        || cg.height() != pg.height() + 2 * border
        || !border.is_multiple_of(2)
    {
        return false;
    }
    let [gy, gu, gv] = rgb_to_ycbcr(glow_rgb(level));
    let (y, u, v) = canvas.planes_mut();
    fill_border(y, cg.width(), cg.height(), border, gy);
    fill_border(u, cg.chroma_width(), cg.chroma_height(), border / 2, gu);
    fill_border(v, cg.chroma_width(), cg.chroma_height(), border / 2, gv);
    copy_plane(picture.y(), pg.width(), y, cg.width(), border);
    copy_plane(
        picture.u(),
        pg.chroma_width(),
        u,
        cg.chroma_width(),
        border / 2,
    );
    copy_plane(
        picture.v(),
        pg.chroma_width(),
        v,
        cg.chroma_width(),
        border / 2,
    );
    if let Some(text) = hud {
        draw_text(
            y,
            cg.width(),
            cg.height(),
            border + HUD_MARGIN,
            border + HUD_MARGIN,
            text,
            hud_scale(pg.width()),
        );
    }
    true
}

/// The picture back out of a headless canvas: the inverse of [`compose_headless`] for a
/// `picture`-sized area inside `border`. `None` if the canvas is not that picture's canvas.
pub fn picture_of_headless(
    canvas: &I420Frame,
    border: usize,
    picture: FrameGeometry,
) -> Option<I420Frame> {
    let cg = canvas.geometry();
    if cg.width() != picture.width() + 2 * border
        || cg.height() != picture.height() + 2 * border
        || !border.is_multiple_of(2)
    {
        return None;
    }
    let cut = |plane: &[u8], stride: usize, w: usize, h: usize, off: usize| -> Vec<u8> {
        (0..h)
            .flat_map(|r| {
                plane[(r + off) * stride + off..(r + off) * stride + off + w]
                    .iter()
                    .copied()
            })
            .collect()
    };
    let (cw, ch) = (picture.chroma_width(), picture.chroma_height());
    I420Frame::from_planes(
        picture,
        cut(
            canvas.y(),
            cg.width(),
            picture.width(),
            picture.height(),
            border,
        ),
        cut(canvas.u(), cg.chroma_width(), cw, ch, border / 2),
        cut(canvas.v(), cg.chroma_width(), cw, ch, border / 2),
    )
    .ok()
}

/// Draws the HUD onto a picture's luma (the window output, which scales the picture itself).
pub fn stamp_hud(luma: &mut [u8], width: usize, height: usize, text: &str) {
    draw_text(
        luma,
        width,
        height,
        HUD_MARGIN,
        HUD_MARGIN,
        text,
        hud_scale(width),
    );
}

/// Font pixels per glyph pixel: 2 from 640 pixels wide up, so the line stays readable.
fn hud_scale(picture_width: usize) -> usize {
    (picture_width / 640).max(1) * 2
}

fn fill_border(plane: &mut [u8], width: usize, height: usize, border: usize, value: u8) {
    for (row, line) in plane.chunks_exact_mut(width).enumerate().take(height) {
        if row < border || row >= height.saturating_sub(border) {
            line.fill(value);
        } else {
            let right = width.saturating_sub(border);
            line[..border.min(width)].fill(value);
            line[right..].fill(value);
        }
    }
}

fn copy_plane(src: &[u8], src_width: usize, dst: &mut [u8], dst_width: usize, offset: usize) {
    for (row, line) in src.chunks_exact(src_width).enumerate() {
        let start = (row + offset) * dst_width + offset;
        if let Some(target) = dst.get_mut(start..start + src_width) {
            target.copy_from_slice(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_fitted_with_their_aspect_kept() {
        let screen = Rect {
            x: 0,
            y: 0,
            width: 1920,
            height: 1080,
        };
        let table = [
            // (area, content) -> fitted
            (
                screen,
                (640, 480),
                Rect {
                    x: 240,
                    y: 0,
                    width: 1440,
                    height: 1080,
                },
            ),
            (screen, (1280, 720), screen),
            (
                Rect {
                    x: 32,
                    y: 32,
                    width: 576,
                    height: 576,
                },
                (640, 480),
                Rect {
                    x: 32,
                    y: 104,
                    width: 576,
                    height: 432,
                },
            ),
            (
                Rect {
                    x: 0,
                    y: 0,
                    width: 0,
                    height: 100,
                },
                (640, 480),
                Rect {
                    x: 0,
                    y: 0,
                    width: 0,
                    height: 0,
                },
            ),
        ];
        for (area, (w, h), want) in table {
            assert_eq!(fit_inside(area, w, h), want, "{area:?} {w}x{h}");
        }
        assert_eq!(
            inside_border(1920, 1080, 32),
            Rect {
                x: 32,
                y: 32,
                width: 1856,
                height: 1016
            }
        );
    }

    #[test]
    fn the_glow_follows_the_mash_level() {
        let table = [(0.0, 0u8), (0.25, 64), (0.5, 128), (1.0, 255)];
        for (level, green) in table {
            assert_eq!(glow_rgb(MashLevel::new(level).unwrap()), [0, green, 0]);
        }
        assert_eq!(rgb_to_ycbcr([0, 0, 0]), [16, 128, 128]);
        assert_eq!(rgb_to_ycbcr([255, 255, 255]), [235, 128, 128]);
        assert_eq!(rgb_to_ycbcr([0, 255, 0]), [145, 54, 34]);
    }

    #[test]
    fn the_headless_canvas_holds_the_picture_unchanged_inside_the_glow() {
        let picture_geometry = FrameGeometry::new(64, 48).unwrap();
        let (y, u, v) = (
            (0..64 * 48).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
            vec![90u8; 32 * 24],
            vec![200u8; 32 * 24],
        );
        let picture = I420Frame::from_planes(picture_geometry, y, u, v).unwrap();
        let (canvas_geometry, border) = headless_canvas(picture_geometry, 5).unwrap();
        assert_eq!(border, 8);
        assert_eq!(
            (canvas_geometry.width(), canvas_geometry.height()),
            (80, 64)
        );
        let mut canvas = I420Frame::grey(canvas_geometry);
        assert!(compose_headless(
            picture.view(),
            MashLevel::FULL,
            border,
            None,
            &mut canvas
        ));
        for row in 0..48 {
            let got = &canvas.y()[(row + 8) * 80 + 8..(row + 8) * 80 + 8 + 64];
            assert_eq!(got, &picture.y()[row * 64..(row + 1) * 64], "row {row}");
        }
        let [gy, gu, gv] = rgb_to_ycbcr([0, 255, 0]);
        assert!(
            canvas.y()[..80 * 8].iter().all(|&p| p == gy),
            "top band glows"
        );
        assert_eq!(canvas.y()[30 * 80 + 79], gy, "right band glows");
        assert_eq!(canvas.u()[0], gu);
        assert_eq!(canvas.v()[31 * 40 + 39], gv);
        assert_eq!(
            canvas.u()[10 * 40 + 10],
            90,
            "chroma inside is the picture's"
        );
        // A canvas of the wrong size is refused, not half-written.
        let mut wrong = I420Frame::grey(picture_geometry);
        assert!(!compose_headless(
            picture.view(),
            MashLevel::FULL,
            border,
            None,
            &mut wrong
        ));
    }

    #[test]
    fn the_picture_comes_back_out_of_its_headless_canvas_exactly() {
        let geometry = FrameGeometry::new(64, 48).unwrap();
        let picture = I420Frame::from_planes(
            geometry,
            (0..64 * 48).map(|i| (i % 239) as u8).collect(),
            (0..32 * 24).map(|i| (i % 97) as u8).collect(),
            (0..32 * 24).map(|i| (i % 61) as u8).collect(),
        )
        .unwrap();
        let (canvas_geometry, border) = headless_canvas(geometry, 16).unwrap();
        let mut canvas = I420Frame::grey(canvas_geometry);
        assert!(compose_headless(
            picture.view(),
            MashLevel::new(0.3).unwrap(),
            border,
            None,
            &mut canvas
        ));
        let back = picture_of_headless(&canvas, border, geometry).unwrap();
        assert_eq!(
            (back.y(), back.u(), back.v()),
            (picture.y(), picture.u(), picture.v())
        );
        // Not this picture's canvas: refused rather than cut wrongly.
        assert!(picture_of_headless(&canvas, border + 2, geometry).is_none());
        assert!(picture_of_headless(&picture, border, geometry).is_none());
    }
}
