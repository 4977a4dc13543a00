//! The JPEG quantisation tables (ITU-T T.81 Annex K) with the IJG quality scaling, and the
//! zigzag scan, so that a keymash quality means what it means to a libjpeg user.

use keymash_core::Quality;

/// Annex K.1 luminance quantisation table, natural (row-major) order.
pub const LUMA_BASE: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, //
    12, 12, 14, 19, 26, 58, 60, 55, //
    14, 13, 16, 24, 40, 57, 69, 56, //
    14, 17, 22, 29, 51, 87, 80, 62, //
    18, 22, 37, 56, 68, 109, 103, 77, //
    24, 35, 55, 64, 81, 104, 113, 92, //
    49, 64, 78, 87, 103, 121, 120, 101, //
    72, 92, 95, 98, 112, 100, 103, 99,
];

/// Annex K.2 chrominance quantisation table, natural (row-major) order.
pub const CHROMA_BASE: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, //
    18, 21, 26, 66, 99, 99, 99, 99, //
    24, 26, 56, 99, 99, 99, 99, 99, //
    47, 66, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99,
];

/// `ZIGZAG[k]` is the natural index of the k-th coefficient in scan order.
pub const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, //
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, //
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, //
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// The IJG percentage scaling: below 50 the table is multiplied by 50/q, above it by (100-q)/50.
pub fn ijg_scale_percent(quality: Quality) -> u32 {
    let q = u32::from(quality.get());
    if q < 50 {
        5000 / q
    } else {
        200 - 2 * q
    }
}

/// A base table scaled for `quality` exactly as libjpeg's `jpeg_add_quant_table` does with
/// `force_baseline`: rounded, then clamped to 1..=255.
pub fn scaled_table(base: &[u16; 64], quality: Quality) -> [u16; 64] {
    let scale = ijg_scale_percent(quality);
    let mut out = [0u16; 64];
    for (o, &b) in out.iter_mut().zip(base) {
        let v = (u32::from(b) * scale + 50) / 100;
        *o = v.clamp(1, 255) as u16;
    }
    out
}

/// Largest quantised level magnitude. The DCT of 8-bit samples stays within +-1024 at quantiser 1;
/// the margin covers rounding. Levels are clamped to it on encode and refused above it on decode.
pub const MAX_LEVEL: i32 = 2047;

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: u8) -> Quality {
        Quality::new(v).unwrap()
    }

    #[test]
    fn scaling_matches_libjpeg_at_landmark_qualities() {
        // (quality, luma[0], luma[63], chroma[0], chroma[63]) as libjpeg's jcparam.c computes.
        let cases: &[(u8, u16, u16, u16, u16)] = &[
            (1, 255, 255, 255, 255),
            (10, 80, 255, 85, 255),
            (25, 32, 198, 34, 198),
            (50, 16, 99, 17, 99),
            (75, 8, 50, 9, 50),
            (90, 3, 20, 3, 20),
            (100, 1, 1, 1, 1),
        ];
        for &(quality, l0, l63, c0, c63) in cases {
            let l = scaled_table(&LUMA_BASE, q(quality));
            let c = scaled_table(&CHROMA_BASE, q(quality));
            assert_eq!(
                (l[0], l[63], c[0], c[63]),
                (l0, l63, c0, c63),
                "quality {quality}"
            );
        }
    }

    #[test]
    fn zigzag_is_a_permutation_that_walks_antidiagonals() {
        let mut seen = [false; 64];
        for &n in &ZIGZAG {
            seen[usize::from(n)] = true;
        }
        assert!(seen.iter().all(|&s| s));
        for pair in ZIGZAG.windows(2) {
            let (a, b) = (usize::from(pair[0]), usize::from(pair[1]));
            let diag = |n: usize| n / 8 + n % 8;
            assert!(diag(b) == diag(a) || diag(b) == diag(a) + 1, "{a} -> {b}");
        }
    }
}
