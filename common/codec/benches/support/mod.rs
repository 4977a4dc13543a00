//! Shared by the codec benches: machine description, test images and clips, the libjpeg-turbo
//! baseline helper (quality bench), percentiles.
#![allow(dead_code)]

use keymash_codec::y4m::Y4mReader;
use keymash_codec::{FrameGeometry, I420Frame};
use keymash_core::percentile::nearest_rank;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The test images every codec bench expects, `<name>_<W>x<H>.y4m` at 640x480 and 1280x720.
pub(crate) const IMAGE_NAMES: [&str; 5] =
    ["astronaut", "camera", "chelsea", "coffee", "testsrc2noise"];

/// The checkout this bench was built from (`common/codec` is two levels down).
fn checkout() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Where `benches/fetch-images.sh` puts the photographs: `KEYMASH_CODEC_IMAGES` if set, else
/// `<checkout>/target/codec-data` (the script's own default).
pub(crate) fn image_dir() -> PathBuf {
    std::env::var_os("KEYMASH_CODEC_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| checkout().join("target").join("codec-data"))
}

/// The command that fetches the images into [`image_dir`].
pub(crate) fn fetch_command() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join("fetch-images.sh");
    format!("{} {}", script.display(), image_dir().display())
}

/// Prints why the bench cannot measure and exits non-zero: a bench that lacks its input must
/// not look like a passing run.
pub(crate) fn fail(why: &str) -> ! {
    eprintln!("error: {why}");
    std::process::exit(1);
}

/// The compiled libjpeg-turbo helper, or exit non-zero saying how to install the library.
pub(crate) fn require_baseline_helper() -> PathBuf {
    baseline_helper().unwrap_or_else(|e| {
        fail(&format!(
            "libjpeg-turbo baseline unavailable: {e}\n  install it with: sudo {}/deploy/install-deps.sh test   (or: sudo apt-get install libturbojpeg0-dev)",
            checkout().display()
        ))
    })
}

/// Every image of [`IMAGE_NAMES`] at this size, or exit non-zero with the command that fetches
/// them.
pub(crate) fn require_images(geometry: FrameGeometry) -> Vec<(String, I420Frame)> {
    IMAGE_NAMES
        .iter()
        .map(|name| ((*name).to_owned(), require_image(geometry, name)))
        .collect()
}

/// One test image, or exit non-zero with the command that fetches it.
pub(crate) fn require_image(geometry: FrameGeometry, name: &str) -> I420Frame {
    let path = image_dir().join(format!(
        "{name}_{}x{}.y4m",
        geometry.width(),
        geometry.height()
    ));
    if !path.exists() {
        fail(&format!(
            "test image {} is missing; fetch the images with:\n  {}\n  (needs pip, unzip and ffmpeg; set KEYMASH_CODEC_IMAGES=DIR to read them from DIR instead)",
            path.display(),
            fetch_command()
        ));
    }
    let frame = load_y4m(&path).unwrap_or_else(|e| {
        fail(&format!(
            "cannot read test image: {e}; fetch the images again with:\n  {}",
            fetch_command()
        ))
    });
    if frame.geometry() != geometry {
        fail(&format!(
            "{} is {}, not {geometry}; fetch the images again with:\n  {}",
            path.display(),
            frame.geometry(),
            fetch_command()
        ));
    }
    frame
}

/// The clips the speed bench expects, `<name>_<W>x<H>_clip.y4m` at 640x480 and 1280x720: one
/// per test image, and `coffeedim`, the coffee pan dark and noisy as a webcam at high gain.
pub(crate) const CLIP_NAMES: [&str; 6] = [
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "testsrc2noise",
    "coffeedim",
];

/// The path of one clip, `<name>_<W>x<H>_clip.y4m`.
fn clip_path(geometry: FrameGeometry, name: &str) -> PathBuf {
    image_dir().join(format!(
        "{name}_{}x{}_clip.y4m",
        geometry.width(),
        geometry.height()
    ))
}

/// Exits non-zero with the command that makes them unless every clip of [`CLIP_NAMES`] is
/// there at each of these sizes: checked before anything is measured.
pub(crate) fn require_clips_exist(geometries: &[FrameGeometry]) {
    for &g in geometries {
        for name in CLIP_NAMES {
            let path = clip_path(g, name);
            if !path.exists() {
                fail(&format!(
                    "test clip {} is missing; make the clips with:\n  {}\n  (needs pip, unzip and ffmpeg; set KEYMASH_CODEC_IMAGES=DIR to read them from DIR instead)",
                    path.display(),
                    fetch_command()
                ));
            }
        }
    }
}

/// Every frame of one clip, or exit non-zero with the command that makes it.
pub(crate) fn require_clip(geometry: FrameGeometry, name: &str) -> Vec<I420Frame> {
    require_clips_exist(&[geometry]);
    let path = clip_path(geometry, name);
    let again = || format!("make the clips again with:\n  {}", fetch_command());
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|e| fail(&format!("{}: {e}; {}", path.display(), again())));
    let mut reader = Y4mReader::new(std::io::BufReader::new(file))
        .unwrap_or_else(|e| fail(&format!("{}: {e}; {}", path.display(), again())));
    if reader.header().geometry != geometry {
        fail(&format!(
            "{} is {}, not {geometry}; {}",
            path.display(),
            reader.header().geometry,
            again()
        ));
    }
    let mut frames = Vec::new();
    loop {
        let mut frame = I420Frame::grey(geometry);
        match reader.read_frame(&mut frame) {
            Ok(true) => frames.push(frame),
            Ok(false) => break,
            Err(e) => fail(&format!("{}: {e}; {}", path.display(), again())),
        }
    }
    if frames.len() < 2 {
        fail(&format!(
            "{} has {} frame(s), not a clip; {}",
            path.display(),
            frames.len(),
            again()
        ));
    }
    frames
}

/// The CPU model line from /proc/cpuinfo, and the core count.
pub(crate) fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{model}, {cores} logical cores")
}

/// The first frame of a Y4M file.
pub(crate) fn load_y4m(path: &Path) -> Result<I420Frame, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = Y4mReader::new(std::io::BufReader::new(file))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut frame = I420Frame::grey(reader.header().geometry);
    match reader.read_frame(&mut frame) {
        Ok(true) => Ok(frame),
        Ok(false) => Err(format!("{}: no frame", path.display())),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Compiles `tj_baseline.c` against the system libturbojpeg (once per bench run).
pub(crate) fn baseline_helper() -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/tj_baseline.c");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tj_baseline");
    let status = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-lturbojpeg")
        .status()
        .map_err(|e| format!("running cc: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cc {} failed (is libturbojpeg0-dev installed?)",
            src.display()
        ));
    }
    Ok(out)
}

/// One libjpeg-turbo measurement at one quality.
#[derive(Debug, Clone)]
pub(crate) struct Baseline {
    pub quality: u8,
    pub bytes: usize,
    /// p50, p99, max.
    pub compress: [Duration; 3],
    pub decompress: [Duration; 3],
    pub decoded: I420Frame,
}

/// Runs the helper on `frame` for each quality.
pub(crate) fn run_baseline(
    helper: &Path,
    frame: &I420Frame,
    qualities: &[u8],
    iterations: usize,
) -> Result<Vec<Baseline>, String> {
    let g = frame.geometry();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let input = dir.join("tj_in.yuv");
    let prefix = dir.join("tj_out");
    let mut bytes = Vec::with_capacity(g.luma_len() + 2 * g.chroma_len());
    bytes.extend_from_slice(frame.y());
    bytes.extend_from_slice(frame.u());
    bytes.extend_from_slice(frame.v());
    std::fs::write(&input, &bytes).map_err(|e| e.to_string())?;
    let output = Command::new(helper)
        .arg(g.width().to_string())
        .arg(g.height().to_string())
        .arg(iterations.to_string())
        .arg(&input)
        .arg(&prefix)
        .args(qualities.iter().map(|q| q.to_string()))
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut out = Vec::new();
    for line in text.lines() {
        let field = |name: &str| -> Option<&str> {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
        };
        let times = |name: &str| -> Option<[Duration; 3]> {
            let v: Vec<u64> = field(name)?
                .split(',')
                .filter_map(|x| x.parse().ok())
                .collect();
            Some([
                Duration::from_nanos(*v.first()?),
                Duration::from_nanos(*v.get(1)?),
                Duration::from_nanos(*v.get(2)?),
            ])
        };
        let parsed = (|| {
            let quality: u8 = field("q")?.parse().ok()?;
            let bytes: usize = field("bytes")?.parse().ok()?;
            let compress = times("comp_ns")?;
            let decompress = times("decomp_ns")?;
            Some((quality, bytes, compress, decompress))
        })();
        let (quality, bytes, compress, decompress) =
            parsed.ok_or_else(|| format!("bad helper line {line:?}"))?;
        let decoded_bytes = std::fs::read(format!("{}.{quality}.yuv", prefix.display()))
            .map_err(|e| e.to_string())?;
        let view = keymash_codec::I420View::from_contiguous(g, &decoded_bytes)
            .map_err(|e| e.to_string())?;
        let mut decoded = I420Frame::grey(g);
        decoded.copy_from(view).map_err(|e| e.to_string())?;
        out.push(Baseline {
            quality,
            bytes,
            compress,
            decompress,
            decoded,
        });
    }
    Ok(out)
}

/// p50, p99 and max of a set of durations.
pub(crate) fn percentiles(times: &mut [Duration]) -> [Duration; 3] {
    times.sort();
    [0.5, 0.99, 1.0].map(|q| nearest_rank(times, q).unwrap_or_default())
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn psnr(a: &[u8], b: &[u8]) -> f64 {
    keymash_codec::frame::psnr_from_squared_error(
        keymash_codec::frame::squared_error(a, b),
        a.len() as u64,
    )
}

/// PSNR over all three planes (sample-weighted, as ffmpeg's "average").
pub(crate) fn psnr_yuv(a: &I420Frame, b: &I420Frame) -> f64 {
    use keymash_codec::frame::squared_error;
    let se =
        squared_error(a.y(), b.y()) + squared_error(a.u(), b.u()) + squared_error(a.v(), b.v());
    let n = (a.y().len() + a.u().len() + a.v().len()) as u64;
    keymash_codec::frame::psnr_from_squared_error(se, n)
}
