//! Shared fixtures for the codec's integration tests.
#![allow(dead_code)]

use keymash_codec::fuzz::SplitMix64;
use keymash_codec::{FrameGeometry, I420Frame};

/// A camera-like test picture: smooth shading, hard edges, fine texture and sensor noise, so
/// that every frequency band carries energy as in real footage.
pub(crate) fn camera_like(geometry: FrameGeometry, seed: u64) -> I420Frame {
    let mut rng = SplitMix64::new(seed);
    let mut frame = I420Frame::grey(geometry);
    let (w, h) = (geometry.width() as f64, geometry.height() as f64);
    let cw = geometry.chroma_width();
    let (y, u, v) = frame.planes_mut();
    let width = geometry.width();
    for (i, p) in y.iter_mut().enumerate() {
        let (x, r) = ((i % width) as f64, (i / width) as f64);
        let shade = 60.0 + 100.0 * (x / w) + 40.0 * (r / h);
        let disc = if ((x - w * 0.6).powi(2) + (r - h * 0.4).powi(2)).sqrt() < h * 0.25 {
            50.0
        } else {
            0.0
        };
        let texture = 12.0 * ((x * 0.9).sin() * (r * 0.7).cos());
        let noise = rng.below(9) as f64 - 4.0;
        *p = (shade + disc + texture + noise).clamp(0.0, 255.0) as u8;
    }
    for (i, (pu, pv)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
        let (x, r) = ((i % cw) as f64, (i / cw) as f64);
        *pu = (128.0 + 30.0 * (x / 20.0).sin()) as u8;
        *pv = (128.0 + 30.0 * (r / 15.0).cos()) as u8;
    }
    frame
}

/// Uniform random noise in every plane: the worst case for any DCT codec.
pub(crate) fn noise(geometry: FrameGeometry, seed: u64) -> I420Frame {
    let mut rng = SplitMix64::new(seed);
    let mut frame = I420Frame::grey(geometry);
    let (y, u, v) = frame.planes_mut();
    for p in y.iter_mut().chain(u.iter_mut()).chain(v.iter_mut()) {
        *p = rng.byte();
    }
    frame
}

pub(crate) fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let se = keymash_codec::frame::squared_error(a, b);
    keymash_codec::frame::psnr_from_squared_error(se, a.len() as u64)
}
