//! A tiny built-in 5x7 bitmap font: just the glyphs the countdown card needs, so no font crate
//! or font file is needed on the exhibit PC.

/// Glyph width and height in font pixels.
pub const GLYPH_WIDTH: usize = 5;
pub const GLYPH_HEIGHT: usize = 7;
/// Font pixels between glyphs.
pub const SPACING: usize = 1;

/// Rows of a glyph, top first; bit 4 is the leftmost column. `None` for characters the font
/// lacks (drawn as blanks).
pub fn glyph(c: char) -> Option<[u8; GLYPH_HEIGHT]> {
    Some(match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'N' => [0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        ' ' => [0; GLYPH_HEIGHT],
        _ => return None,
    })
}

/// Width in font pixels of `text` set in one line.
pub fn text_width(text: &str) -> usize {
    let n = text.chars().count();
    if n == 0 {
        0
    } else {
        n * (GLYPH_WIDTH + SPACING) - SPACING
    }
}

/// Calls `set(x, y)` for every lit font pixel of `text`, (0, 0) being its top-left corner.
pub fn for_each_lit_pixel(text: &str, mut set: impl FnMut(usize, usize)) {
    for (i, c) in text.chars().enumerate() {
        let rows = glyph(c).unwrap_or([0; GLYPH_HEIGHT]);
        let x0 = i * (GLYPH_WIDTH + SPACING);
        for (y, bits) in rows.iter().enumerate() {
            for x in 0..GLYPH_WIDTH {
                if bits & (0x10 >> x) != 0 {
                    set(x0 + x, y);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glyph_the_card_uses_exists_and_fits_five_columns() {
        for c in "0123456789 STARTING IN".chars() {
            let rows = glyph(c).unwrap_or_else(|| panic!("missing glyph {c:?}"));
            assert!(rows.iter().all(|r| r & !0x1F == 0), "{c:?} wider than 5");
        }
        assert_eq!(glyph('?'), None);
    }

    #[test]
    fn digits_are_all_different() {
        let digits: Vec<_> = ('0'..='9').filter_map(glyph).collect();
        for (i, a) in digits.iter().enumerate() {
            for b in &digits[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn text_width_counts_spacing_between_glyphs_only() {
        assert_eq!(text_width(""), 0);
        assert_eq!(text_width("1"), 5);
        assert_eq!(text_width("12"), 11);
    }
}
