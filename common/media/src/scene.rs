//! The synthetic source: a camera-like moving test scene with the [`crate::stamp`] drawn in.
//!
//! What a codec and a viewer should see from a webcam, not a smooth gradient: a textured
//! "room" (shelves, a window, uneven light), a ball bouncing across it, a figure walking left
//! and right, a turning bar, and a little sensor noise in every frame. Motion follows the
//! capture time, not the frame count, so the scene moves at the same speed whatever the rate.

use keymash_codec::{FrameGeometry, I420Frame};
use keymash_core::FrameNo;

use crate::paint;
use crate::stamp::{draw_stamp, Stamp};

/// Peak amplitude of the per-frame sensor noise, in luma levels.
const NOISE_LEVELS: u32 = 3;

/// Generates the synthetic scene. Build once (the static background is computed here), then
/// [`SyntheticScene::render`] each frame into a reused buffer.
#[derive(Debug)]
pub struct SyntheticScene {
    geometry: FrameGeometry,
    background: I420Frame,
    noise_state: u64,
}

impl SyntheticScene {
    /// A scene of `geometry`; `seed` varies the sensor noise (the background is fixed).
    pub fn new(geometry: FrameGeometry, seed: u64) -> Self {
        SyntheticScene {
            geometry,
            background: room(geometry),
            noise_state: seed | 1,
        }
    }

    pub fn geometry(&self) -> FrameGeometry {
        self.geometry
    }

    /// Renders frame `frame` captured at `capture_ns` into `out` (which must have the scene's
    /// geometry; a frame of another size is left untouched and `false` returned), stamp included.
    pub fn render(&mut self, frame: FrameNo, capture_ns: u64, out: &mut I420Frame) -> bool {
        if out.geometry() != self.geometry || out.copy_from(self.background.view()).is_err() {
            return false;
        }
        let t = capture_ns as f64 / 1e9;
        let (w, h) = (self.geometry.width() as f64, self.geometry.height() as f64);
        // A figure walking left and right along the floor (period 8 s).
        let walk = triangle(t / 8.0);
        let figure_x = w * (0.1 + 0.7 * walk);
        fill_rect(out, figure_x, h * 0.35, w * 0.12, h * 0.6, (70, 150, 110));
        fill_disc(out, figure_x + w * 0.06, h * 0.3, h * 0.08, (190, 110, 150));
        // A ball bouncing across the room (periods 3.1 s and 1.3 s).
        let ball_x = w * (0.1 + 0.8 * triangle(t / 3.1));
        let ball_y = h * (0.15 + 0.6 * (1.0 - (2.0 * triangle(t / 1.3) - 1.0).powi(2)));
        fill_disc(out, ball_x, ball_y, h * 0.07, (210, 80, 190));
        // A bar turning once every 4 s, like a fan or a clock hand.
        let angle = t * std::f64::consts::TAU / 4.0;
        draw_bar(out, w * 0.82, h * 0.22, h * 0.15, angle, 40);
        self.add_noise(out);
        draw_stamp(out, Stamp::new(frame, capture_ns));
        true
    }

    fn add_noise(&mut self, out: &mut I420Frame) {
        let (y, _, _) = out.planes_mut();
        let span = 2 * NOISE_LEVELS + 1;
        for chunk in y.chunks_mut(8) {
            // xorshift64: one draw gives eight pixels' noise.
            let mut x = self.noise_state;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.noise_state = x;
            for (i, p) in chunk.iter_mut().enumerate() {
                let n = ((x >> (i * 8)) & 0xFF) as u32 % span;
                *p = (u32::from(*p) + n).saturating_sub(NOISE_LEVELS).min(255) as u8;
            }
        }
    }
}

/// 0 -> 1 -> 0 over each unit of `x`.
fn triangle(x: f64) -> f64 {
    let f = x.rem_euclid(1.0);
    if f < 0.5 {
        2.0 * f
    } else {
        2.0 - 2.0 * f
    }
}

/// The static background: a wall with uneven light, a window, shelves with books, a floor.
fn room(geometry: FrameGeometry) -> I420Frame {
    let mut frame = I420Frame::grey(geometry);
    let (w, h) = (geometry.width(), geometry.height());
    {
        let (y, u, v) = frame.planes_mut();
        for row in 0..h {
            for col in 0..w {
                let (fx, fy) = (col as f64 / w as f64, row as f64 / h as f64);
                // Light from the upper left, plus a fine plaster texture (hash noise).
                let light = 150.0 - 60.0 * ((fx - 0.2).powi(2) + (fy - 0.1).powi(2)).sqrt();
                let texture = f64::from(hash(col as u32 / 2, row as u32 / 2) % 17) - 8.0;
                let floor = if fy > 0.8 {
                    -40.0 + 10.0 * ((col / 24 + row / 12) % 2) as f64
                } else {
                    0.0
                };
                y[row * w + col] = (light + texture + floor).clamp(16.0, 235.0) as u8;
            }
        }
        let cw = geometry.chroma_width();
        for (i, (cu, cv)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
            let fy = (i / cw) as f64 / geometry.chroma_height() as f64;
            // A warm wall and a cooler floor.
            (*cu, *cv) = if fy > 0.8 { (140, 120) } else { (118, 138) };
        }
    }
    // A bright window with a cross bar.
    fill_rect(
        &mut frame,
        w as f64 * 0.05,
        h as f64 * 0.08,
        w as f64 * 0.25,
        h as f64 * 0.3,
        (225, 135, 120),
    );
    fill_rect(
        &mut frame,
        w as f64 * 0.17,
        h as f64 * 0.08,
        w as f64 * 0.012,
        h as f64 * 0.3,
        (60, 128, 128),
    );
    // Shelves with books of different colours and heights.
    for shelf in 0..3 {
        let top = h as f64 * (0.3 + 0.15 * shelf as f64);
        fill_rect(
            &mut frame,
            w as f64 * 0.45,
            top + h as f64 * 0.11,
            w as f64 * 0.3,
            h as f64 * 0.015,
            (50, 120, 140),
        );
        let mut x = w as f64 * 0.46;
        let mut book = 0u32;
        while x < w as f64 * 0.74 {
            let r = hash(book, shelf);
            let width = w as f64 * (0.008 + f64::from(r % 7) * 0.003);
            let height = h as f64 * (0.06 + f64::from((r >> 8) % 5) * 0.01);
            let colour = (
                60 + (r >> 16) as u8 % 150,
                90 + (r >> 4) as u8 % 80,
                90 + (r >> 12) as u8 % 80,
            );
            fill_rect(
                &mut frame,
                x,
                top + h as f64 * 0.11 - height,
                width,
                height,
                colour,
            );
            x += width + 1.0;
            book += 1;
        }
    }
    frame
}

fn hash(a: u32, b: u32) -> u32 {
    let mut x = a.wrapping_mul(0x9E37_79B1) ^ b.wrapping_mul(0x85EB_CA77);
    x ^= x >> 15;
    x = x.wrapping_mul(0x2C1B_3C6D);
    x ^= x >> 12;
    x
}

/// Fills a rectangle given in (possibly negative or off-frame) float coordinates, clipped.
fn fill_rect(frame: &mut I420Frame, x: f64, y: f64, width: f64, height: f64, colour: (u8, u8, u8)) {
    let geometry = frame.geometry();
    let (w, h) = (geometry.width(), geometry.height());
    let clip = |v: f64, max: usize| v.clamp(0.0, max as f64) as usize;
    let (x0, x1) = (clip(x, w), clip(x + width, w));
    let (y0, y1) = (clip(y, h), clip(y + height, h));
    paint::fill_rect(frame, x0, y0, x1 - x0, y1 - y0, colour);
}

/// Fills a shaded disc (lit from the upper left) with a (Y, U, V) colour.
fn fill_disc(frame: &mut I420Frame, cx: f64, cy: f64, radius: f64, colour: (u8, u8, u8)) {
    let geometry = frame.geometry();
    let (w, h) = (geometry.width() as i64, geometry.height() as i64);
    let cw = geometry.chroma_width();
    let r = radius.max(1.0);
    let (luma, u, v) = frame.planes_mut();
    let (y0, y1) = (((cy - r) as i64).max(0), ((cy + r) as i64 + 1).min(h));
    let (x0, x1) = (((cx - r) as i64).max(0), ((cx + r) as i64 + 1).min(w));
    for row in y0..y1 {
        for col in x0..x1 {
            let (dx, dy) = ((col as f64 - cx) / r, (row as f64 - cy) / r);
            let d2 = dx * dx + dy * dy;
            if d2 > 1.0 {
                continue;
            }
            let shade = 1.0 - 0.35 * ((dx + 0.4).powi(2) + (dy + 0.4).powi(2)).sqrt();
            let (row, col) = (row as usize, col as usize);
            if let Some(p) = luma.get_mut(row * geometry.width() + col) {
                *p = (f64::from(colour.0) * shade).clamp(16.0, 235.0) as u8;
            }
            if row % 2 == 0 && col % 2 == 0 {
                let i = (row / 2) * cw + col / 2;
                if let (Some(pu), Some(pv)) = (u.get_mut(i), v.get_mut(i)) {
                    (*pu, *pv) = (colour.1, colour.2);
                }
            }
        }
    }
}

/// A dark bar of half-length `length` through (cx, cy) at `angle`.
fn draw_bar(frame: &mut I420Frame, cx: f64, cy: f64, length: f64, angle: f64, luma_level: u8) {
    let geometry = frame.geometry();
    let (w, h) = (geometry.width() as f64, geometry.height() as f64);
    let (dx, dy) = (angle.cos(), angle.sin());
    let steps = (length * 2.0) as i64;
    let (luma, _, _) = frame.planes_mut();
    for s in -steps..=steps {
        let t = s as f64 / 2.0;
        for thickness in -2..=2 {
            let x = cx + dx * t - dy * f64::from(thickness);
            let y = cy + dy * t + dx * f64::from(thickness);
            if x >= 0.0 && y >= 0.0 && x < w && y < h {
                if let Some(p) = luma.get_mut(y as usize * geometry.width() + x as usize) {
                    *p = luma_level;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::read_stamp;

    fn mean_abs_difference(a: &[u8], b: &[u8]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (i32::from(x) - i32::from(y)).unsigned_abs() as f64)
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn the_scene_moves_and_carries_its_stamp() {
        let geometry = FrameGeometry::new(320, 240).unwrap();
        let mut scene = SyntheticScene::new(geometry, 7);
        let (mut a, mut b) = (I420Frame::grey(geometry), I420Frame::grey(geometry));
        assert!(scene.render(FrameNo(10), 1_000_000_000, &mut a));
        assert!(scene.render(FrameNo(40), 2_000_000_000, &mut b));
        assert_eq!(read_stamp(&a), Some(Stamp::new(FrameNo(10), 1_000_000_000)));
        assert_eq!(read_stamp(&b), Some(Stamp::new(FrameNo(40), 2_000_000_000)));
        // One second apart the moving objects are elsewhere: well above the noise floor.
        assert!(
            mean_abs_difference(a.y(), b.y()) > 4.0,
            "scene barely moved"
        );
    }

    #[test]
    fn the_scene_is_textured_not_a_smooth_gradient() {
        let geometry = FrameGeometry::new(320, 240).unwrap();
        let mut scene = SyntheticScene::new(geometry, 1);
        let mut frame = I420Frame::grey(geometry);
        assert!(scene.render(FrameNo(0), 0, &mut frame));
        // Horizontal neighbour differences: a gradient has almost none, a camera picture many.
        let y = frame.y();
        let busy = y
            .windows(2)
            .filter(|p| (i32::from(p[0]) - i32::from(p[1])).abs() >= 4)
            .count();
        assert!(
            busy * 10 > y.len(),
            "only {busy} of {} neighbours differ",
            y.len()
        );
        // And it spans a real range of brightness.
        let (lo, hi) = (
            y.iter().min().copied().unwrap_or(0),
            y.iter().max().copied().unwrap_or(0),
        );
        assert!(hi - lo > 150, "range {lo}..{hi}");
    }

    #[test]
    fn a_frame_of_another_size_is_refused() {
        let mut scene = SyntheticScene::new(FrameGeometry::new(320, 240).unwrap(), 1);
        let mut wrong = I420Frame::grey(FrameGeometry::new(160, 112).unwrap());
        assert!(!scene.render(FrameNo(0), 0, &mut wrong));
    }
}
