//! PNG files of packed RGB pictures.

use std::path::Path;

use anyhow::Context as _;

/// Writes `rgb` (`width` x `height` pixels, rows packed) to `path` as an 8-bit RGB PNG: the
/// demo's contact sheet and plot, and `keymash camera --snapshot FILE.png`.
pub(crate) fn write_png(
    path: &Path,
    width: usize,
    height: usize,
    rgb: &[u8],
) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(
        std::io::BufWriter::new(file),
        u32::try_from(width)?,
        u32::try_from(height)?,
    );
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .with_context(|| format!("writing {}", path.display()))?;
    writer
        .write_image_data(rgb)
        .with_context(|| format!("writing {}", path.display()))?;
    writer
        .finish()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
