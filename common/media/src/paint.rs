//! The rectangle fill the synthetic scene and the countdown card both draw with.

use keymash_codec::I420Frame;

/// Fills a clipped rectangle with a (Y, U, V) colour.
pub(crate) fn fill_rect(
    out: &mut I420Frame,
    x: usize,
    y: usize,
    width: usize,
    height: usize,
    colour: (u8, u8, u8),
) {
    let geometry = out.geometry();
    let (w, h, cw) = (geometry.width(), geometry.height(), geometry.chroma_width());
    let (x1, y1) = ((x + width).min(w), (y + height).min(h));
    let (x0, y0) = (x.min(x1), y.min(y1));
    let (luma, u, v) = out.planes_mut();
    for row in y0..y1 {
        if let Some(span) = luma.get_mut(row * w + x0..row * w + x1) {
            span.fill(colour.0);
        }
    }
    for row in y0 / 2..y1.div_ceil(2) {
        let span = row * cw + x0 / 2..row * cw + x1.div_ceil(2);
        if let Some(s) = u.get_mut(span.clone()) {
            s.fill(colour.1);
        }
        if let Some(s) = v.get_mut(span) {
            s.fill(colour.2);
        }
    }
}
