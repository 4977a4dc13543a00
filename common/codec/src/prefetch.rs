//! Cache hints for the frame lines a macroblock is about to read or write.
//!
//! A macroblock's 32 rows (16 luma, 8 of each chroma plane) lie a stride apart: more streams,
//! apparently, than the hardware prefetchers follow. Asking for the next macroblock's lines one
//! macroblock ahead (a few thousand instructions, far longer than a memory fetch) takes the
//! misses off the critical path: measured on the speed bench, a few percent of the decode time
//! and about a tenth of the encode time on clips whose every frame is new.

/// What the lines will be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intent {
    /// Read (the encoder's source frame).
    Read,
    /// Written (the decoder's frame): fetched ready to modify.
    Write,
}

/// Asks for the lines of the macroblock whose luma starts at (`lx`, `ly`) and chroma at
/// (`cx`, `cy`) of planes `[y, u, v]` with luma stride `width` and chroma stride `width / 2`.
/// Positions outside a plane are skipped; a hint never faults and never changes a result.
#[inline(always)]
pub(crate) fn macroblock_lines(
    planes: [&[u8]; 3],
    width: usize,
    [lx, ly, cx, cy]: [usize; 4],
    intent: Intent,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let [y, u, v] = planes;
        let mut at = ly * width + lx;
        for _ in 0..16 {
            if let Some(sample) = y.get(at) {
                hint(sample, intent);
            }
            at += width;
        }
        let chroma_width = width / 2;
        let mut at = cy * chroma_width + cx;
        for _ in 0..8 {
            if let (Some(first), Some(second)) = (u.get(at), v.get(at)) {
                hint(first, intent);
                hint(second, intent);
            }
            at += chroma_width;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (planes, width, lx, ly, cx, cy, intent);
}

/// One hint; a function rather than a closure, which the compiler did not always inline.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn hint(sample: &u8, intent: Intent) {
    match intent {
        Intent::Read => safe_arch::prefetch_t0(sample),
        Intent::Write => safe_arch::prefetch_et0(sample),
    }
}
