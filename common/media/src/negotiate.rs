//! V4L2 format negotiation as pure code: from what a camera offers (VIDIOC_ENUM_FMT,
//! ENUM_FRAMESIZES, ENUM_FRAMEINTERVALS) and `capture.format`, pick YUYV or MJPEG at the
//! configured size and a frame rate. The capture service asks the device, calls
//! [`negotiate`], logs [`Negotiated::fallback`] when the choice is not what was asked, sets the
//! result, and checks with [`Negotiated::check_applied`] what the driver really accepted
//! (drivers may silently adjust).
//!
//! The size must match exactly (the pipeline does not scale). With `"auto"`, YUYV is preferred
//! (no decoding, no compression artefacts) when the camera gives it at the configured rate or
//! faster; many UVC webcams give 1280x720 at 30 fps only as MJPEG and YUYV at 10 fps or less,
//! and then MJPEG at full rate is the better picture of a moving visitor.

use std::fmt;

use keymash_core::config::CaptureFormat;

/// The FourCC of packed YUYV 4:2:2.
pub const YUYV: [u8; 4] = *b"YUYV";
/// The FourCC of Motion JPEG as UVC cameras name it.
pub const MJPG: [u8; 4] = *b"MJPG";
/// The FourCC some drivers use for the same thing (V4L2_PIX_FMT_JPEG).
pub const JPEG: [u8; 4] = *b"JPEG";

/// A rate counts as reaching the configured one within this factor: 30000/1001 (29.97) fps
/// is what "30 fps" means to NTSC-descended cameras.
const RATE_TOLERANCE: f64 = 0.99;

/// The pixel formats capture can turn into the pipeline's I420.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed YUYV 4:2:2, converted without decoding.
    Yuyv,
    /// Motion JPEG, decoded on the sender.
    Mjpeg,
}

impl PixelFormat {
    pub fn from_fourcc(fourcc: [u8; 4]) -> Option<Self> {
        match fourcc {
            YUYV => Some(PixelFormat::Yuyv),
            MJPG | JPEG => Some(PixelFormat::Mjpeg),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Mjpeg => "MJPEG",
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The mode the configuration asks for (`video.width`, `video.height`, `video.fps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraMode {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

/// A frame interval as V4L2 states it: `numerator / denominator` seconds per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInterval {
    pub numerator: u32,
    pub denominator: u32,
}

impl FrameInterval {
    pub fn fps(self) -> f64 {
        if self.numerator == 0 {
            0.0
        } else {
            f64::from(self.denominator) / f64::from(self.numerator)
        }
    }

    fn is_valid(self) -> bool {
        self.numerator > 0 && self.denominator > 0
    }
}

/// Frame sizes a device offers for one format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferedSizes {
    /// A list of sizes, each with its discrete frame intervals (empty: the driver did not say).
    Discrete(Vec<(u32, u32, Vec<FrameInterval>)>),
    /// Any size in a range on a step grid (some UVC and virtual devices); rates unknown.
    Stepwise {
        min: (u32, u32),
        max: (u32, u32),
        step: (u32, u32),
    },
}

/// One pixel format a device offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFormat {
    pub fourcc: [u8; 4],
    pub sizes: OfferedSizes,
}

/// What to set on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub format: PixelFormat,
    /// The FourCC to set, as the device spells the format (`MJPG` or `JPEG`).
    pub fourcc: [u8; 4],
    pub width: u32,
    pub height: u32,
    /// The interval to request; `None` if the device lists no rates (it keeps its own).
    pub interval: Option<FrameInterval>,
    /// Why this is not exactly what was asked (another format than YUYV under `"auto"`, or a
    /// rate below `video.fps`), as one log line; `None` when it is.
    pub fallback: Option<String>,
}

impl Negotiated {
    /// Checks the format the driver reports after setting it: a driver that changed the pixel
    /// format or size has refused the mode (the pipeline cannot scale).
    pub fn check_applied(
        &self,
        fourcc: [u8; 4],
        width: u32,
        height: u32,
    ) -> Result<(), NegotiationError> {
        if fourcc != self.fourcc || (width, height) != (self.width, self.height) {
            return Err(NegotiationError::DeviceChangedFormat {
                wanted: format!(
                    "{} {}x{}",
                    fourcc_text(self.fourcc),
                    self.width,
                    self.height
                ),
                got: format!("{} {width}x{height}", fourcc_text(fourcc)),
            });
        }
        Ok(())
    }
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}x{}", self.format, self.width, self.height)?;
        match self.interval {
            Some(i) => write!(
                f,
                " @ {:.2} fps ({}/{} s)",
                i.fps(),
                i.numerator,
                i.denominator
            ),
            None => write!(f, " @ the device's rate"),
        }
    }
}

/// Why no usable mode was found. Each lists what the camera offers, so the installer can pick
/// a `video.width`/`video.height`/`capture.format` it has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("capture.format asks for {format}, but the camera offers no {format} (it offers: {offered})")]
    FormatNotOffered {
        format: PixelFormat,
        offered: String,
    },
    #[error("the camera offers {format} only at other sizes than the configured {width}x{height} (`video.width`/`video.height`); it offers: {offered}")]
    SizeNotOffered {
        format: PixelFormat,
        width: u32,
        height: u32,
        offered: String,
    },
    #[error("the camera offers neither YUYV nor MJPEG at the configured {width}x{height} (`video.width`/`video.height`); it offers: {offered}")]
    NoUsableMode {
        width: u32,
        height: u32,
        offered: String,
    },
    #[error("asked for {wanted}, the driver set {got}")]
    DeviceChangedFormat { wanted: String, got: String },
}

/// Shows a FourCC as text (`YUYV`, `MJPG`), non-printing bytes as `?`.
pub fn fourcc_text(fourcc: [u8; 4]) -> String {
    fourcc
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

/// A rate for people: `30`, `29.97`.
fn fps_text(fps: f64) -> String {
    if (fps - fps.round()).abs() < 0.005 {
        format!("{}", fps.round())
    } else {
        format!("{fps:.2}")
    }
}

/// Everything a camera offers, for error messages: `YUYV 640x480 at 30/15 fps, 1280x720 at
/// 10 fps; MJPG 1280x720 at 30 fps; H264 ...`.
pub fn describe_offered(offered: &[OfferedFormat]) -> String {
    if offered.is_empty() {
        return "no formats".to_owned();
    }
    offered
        .iter()
        .map(|format| {
            let sizes = match &format.sizes {
                OfferedSizes::Discrete(sizes) if sizes.is_empty() => "no sizes".to_owned(),
                OfferedSizes::Discrete(sizes) => sizes
                    .iter()
                    .map(|(w, h, intervals)| {
                        let rates: Vec<String> = intervals
                            .iter()
                            .filter(|i| i.is_valid())
                            .map(|i| fps_text(i.fps()))
                            .collect();
                        if rates.is_empty() {
                            format!("{w}x{h}")
                        } else {
                            format!("{w}x{h} at {} fps", rates.join("/"))
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                OfferedSizes::Stepwise { min, max, step } => format!(
                    "{}x{} to {}x{} in steps of {}x{}",
                    min.0, min.1, max.0, max.1, step.0, step.1
                ),
            };
            format!("{} {sizes}", fourcc_text(format.fourcc))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// How a format's best interval at the configured size meets the configured rate.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rate {
    /// At least the configured rate: the offered rate nearest to it (on a tie, the faster).
    Meets(FrameInterval),
    /// The device lists no rates at this size (stepwise sizes, or an empty list).
    Unknown,
    /// Only slower rates: the fastest of them.
    Below(FrameInterval),
}

impl Rate {
    fn interval(self) -> Option<FrameInterval> {
        match self {
            Rate::Meets(i) | Rate::Below(i) => Some(i),
            Rate::Unknown => None,
        }
    }
}

/// One format's offer at the configured size, or why there is none.
#[derive(Debug, Clone, Copy)]
enum Fit<'a> {
    NotOffered,
    NoSize,
    At(&'a OfferedFormat, Rate),
}

fn fit(offered: &[OfferedFormat], format: PixelFormat, wanted: CameraMode) -> Fit<'_> {
    // A device offering both MJPG and JPEG is asked for MJPG, the name UVC uses.
    let mut matching: Vec<&OfferedFormat> = offered
        .iter()
        .filter(|f| PixelFormat::from_fourcc(f.fourcc) == Some(format))
        .collect();
    matching.sort_by_key(|f| f.fourcc == JPEG);
    if matching.is_empty() {
        return Fit::NotOffered;
    }
    for offer in matching {
        if let Some(intervals) = intervals_at(offer, wanted.width, wanted.height) {
            return Fit::At(offer, best_rate(&intervals, wanted.fps));
        }
    }
    Fit::NoSize
}

/// The intervals offered at exactly `width`x`height` (empty: rates unknown), or `None` if
/// the size is not offered.
fn intervals_at(offer: &OfferedFormat, width: u32, height: u32) -> Option<Vec<FrameInterval>> {
    match &offer.sizes {
        OfferedSizes::Discrete(sizes) => sizes
            .iter()
            .find(|(w, h, _)| (*w, *h) == (width, height))
            .map(|(_, _, intervals)| intervals.clone()),
        OfferedSizes::Stepwise { min, max, step } => {
            let on_grid = |v: u32, lo: u32, hi: u32, step: u32| {
                (lo..=hi).contains(&v) && (step == 0 || (v - lo).is_multiple_of(step))
            };
            (on_grid(width, min.0, max.0, step.0) && on_grid(height, min.1, max.1, step.1))
                .then(Vec::new)
        }
    }
}

/// Of the offered intervals, the rate nearest the configured one among those reaching it (on a
/// tie, the faster: a frame too many is skipped downstream, a frame too few is a stutter), else
/// the fastest there is.
fn best_rate(intervals: &[FrameInterval], fps: u32) -> Rate {
    let target = f64::from(fps);
    let valid = intervals.iter().copied().filter(|i| i.is_valid());
    let reaching = valid
        .clone()
        .filter(|i| i.fps() >= target * RATE_TOLERANCE)
        .min_by(|a, b| {
            let (da, db) = ((a.fps() - target).abs(), (b.fps() - target).abs());
            da.total_cmp(&db).then(b.fps().total_cmp(&a.fps()))
        });
    if let Some(interval) = reaching {
        return Rate::Meets(interval);
    }
    match valid.max_by(|a, b| a.fps().total_cmp(&b.fps())) {
        Some(interval) => Rate::Below(interval),
        None => Rate::Unknown,
    }
}

/// What one format lacks, for the fallback line: "camera offers YUYV 1280x720 only at 10 fps".
fn lack(format: PixelFormat, fit: Fit<'_>, wanted: CameraMode) -> String {
    let (w, h) = (wanted.width, wanted.height);
    match fit {
        Fit::NotOffered => format!("camera offers no {format}"),
        Fit::NoSize => format!("camera offers no {format} at {w}x{h}"),
        Fit::At(_, Rate::Below(i)) => {
            format!(
                "camera offers {format} {w}x{h} only at {} fps",
                fps_text(i.fps())
            )
        }
        Fit::At(_, Rate::Unknown) => format!("camera lists no {format} rates at {w}x{h}"),
        Fit::At(_, Rate::Meets(i)) => {
            format!(
                "camera offers {format} {w}x{h} at {} fps",
                fps_text(i.fps())
            )
        }
    }
}

fn chosen(
    format: PixelFormat,
    offer: &OfferedFormat,
    rate: Rate,
    wanted: CameraMode,
    fallback: Option<String>,
) -> Negotiated {
    Negotiated {
        format,
        fourcc: offer.fourcc,
        width: wanted.width,
        height: wanted.height,
        interval: rate.interval(),
        fallback,
    }
}

/// "using MJPEG 1280x720 at 30 fps".
fn using(format: PixelFormat, rate: Rate, wanted: CameraMode) -> String {
    let at = match rate.interval() {
        Some(i) => format!("at {} fps", fps_text(i.fps())),
        None => "at the camera's own rate".to_owned(),
    };
    format!("using {format} {}x{} {at}", wanted.width, wanted.height)
}

/// Picks the format, size and rate to ask the camera for (see the module comment). Under
/// `"yuyv"` or `"mjpeg"` that format at the configured size is required; under `"auto"`:
/// YUYV reaching the configured rate, else MJPEG reaching it, else whichever of the two is
/// fastest at the configured size (a listed rate beats an unlisted one, YUYV wins a tie), with
/// the reason in [`Negotiated::fallback`].
pub fn negotiate(
    offered: &[OfferedFormat],
    wanted: CameraMode,
    preference: CaptureFormat,
) -> Result<Negotiated, NegotiationError> {
    let (w, h) = (wanted.width, wanted.height);
    let insist = |format: PixelFormat| match fit(offered, format, wanted) {
        Fit::NotOffered => Err(NegotiationError::FormatNotOffered {
            format,
            offered: describe_offered(offered),
        }),
        Fit::NoSize => Err(NegotiationError::SizeNotOffered {
            format,
            width: w,
            height: h,
            offered: describe_offered(offered),
        }),
        Fit::At(offer, rate) => {
            let fallback = match rate {
                Rate::Below(_) => Some(format!(
                    "{}, below video.fps = {}; {} (capture.format = \"{}\")",
                    lack(format, Fit::At(offer, rate), wanted),
                    wanted.fps,
                    using(format, rate, wanted),
                    format.name().to_ascii_lowercase()
                )),
                Rate::Meets(_) | Rate::Unknown => None,
            };
            Ok(chosen(format, offer, rate, wanted, fallback))
        }
    };
    let yuyv = match preference {
        CaptureFormat::Yuyv => return insist(PixelFormat::Yuyv),
        CaptureFormat::Mjpeg => return insist(PixelFormat::Mjpeg),
        CaptureFormat::Auto => fit(offered, PixelFormat::Yuyv, wanted),
    };
    let mjpeg = fit(offered, PixelFormat::Mjpeg, wanted);
    if let Fit::At(offer, rate @ Rate::Meets(_)) = yuyv {
        return Ok(chosen(PixelFormat::Yuyv, offer, rate, wanted, None));
    }
    if let Fit::At(offer, rate @ Rate::Meets(_)) = mjpeg {
        let why = format!(
            "{}; {}",
            lack(PixelFormat::Yuyv, yuyv, wanted),
            using(PixelFormat::Mjpeg, rate, wanted)
        );
        return Ok(chosen(PixelFormat::Mjpeg, offer, rate, wanted, Some(why)));
    }
    // Neither reaches the rate: the faster of what there is. An unlisted rate ranks above a
    // listed slow one (the camera keeps its own, usually its fastest).
    let rank = |rate: Rate| match rate {
        Rate::Unknown => f64::INFINITY,
        Rate::Below(i) | Rate::Meets(i) => i.fps(),
    };
    let best = match (yuyv, mjpeg) {
        (Fit::At(y, yr), Fit::At(m, mr)) => {
            if rank(mr) > rank(yr) {
                Some((PixelFormat::Mjpeg, m, mr))
            } else {
                Some((PixelFormat::Yuyv, y, yr))
            }
        }
        (Fit::At(y, yr), _) => Some((PixelFormat::Yuyv, y, yr)),
        (_, Fit::At(m, mr)) => Some((PixelFormat::Mjpeg, m, mr)),
        _ => None,
    };
    let Some((format, offer, rate)) = best else {
        return Err(NegotiationError::NoUsableMode {
            width: w,
            height: h,
            offered: describe_offered(offered),
        });
    };
    let why = format!(
        "{}, {}; {}",
        lack(PixelFormat::Yuyv, yuyv, wanted),
        lack(PixelFormat::Mjpeg, mjpeg, wanted),
        using(format, rate, wanted)
    );
    Ok(chosen(format, offer, rate, wanted, Some(why)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(fps: u32) -> FrameInterval {
        FrameInterval {
            numerator: 1,
            denominator: fps,
        }
    }

    const NTSC_30: FrameInterval = FrameInterval {
        numerator: 1001,
        denominator: 30000,
    };

    fn mode(width: u32, height: u32, fps: u32) -> CameraMode {
        CameraMode { width, height, fps }
    }

    /// A typical UVC webcam: MJPG at everything, YUYV at full rate only when small.
    fn webcam() -> Vec<OfferedFormat> {
        vec![
            OfferedFormat {
                fourcc: MJPG,
                sizes: OfferedSizes::Discrete(vec![
                    (1280, 720, vec![rate(30), rate(15)]),
                    (640, 480, vec![rate(30)]),
                    (1920, 1080, vec![rate(15)]),
                ]),
            },
            OfferedFormat {
                fourcc: YUYV,
                sizes: OfferedSizes::Discrete(vec![
                    (640, 480, vec![rate(30), rate(15)]),
                    (1280, 720, vec![rate(10), rate(5)]),
                    (320, 240, vec![NTSC_30]),
                    (1920, 1080, vec![rate(5)]),
                ]),
            },
        ]
    }

    fn fps_of(n: &Negotiated) -> Option<f64> {
        n.interval.map(FrameInterval::fps)
    }

    #[test]
    fn auto_picks_by_size_and_rate() {
        use PixelFormat::{Mjpeg, Yuyv};
        // (width, height, fps) -> (format, interval fps, a fallback line?)
        let cases = [
            ((640, 480, 30), Yuyv, 30.0, false),
            ((640, 480, 15), Yuyv, 15.0, false),
            ((640, 480, 20), Yuyv, 30.0, false),
            ((640, 480, 25), Yuyv, 30.0, false),
            ((320, 240, 30), Yuyv, 30000.0 / 1001.0, false),
            ((1280, 720, 30), Mjpeg, 30.0, true),
            ((1280, 720, 10), Yuyv, 10.0, false),
            ((1280, 720, 12), Mjpeg, 15.0, true),
            ((1920, 1080, 30), Mjpeg, 15.0, true),
        ];
        for ((width, height, fps), format, expected_fps, fallback) in cases {
            let what = format!("{width}x{height}@{fps}");
            let n = negotiate(&webcam(), mode(width, height, fps), CaptureFormat::Auto).unwrap();
            assert_eq!((n.width, n.height), (width, height), "{what}");
            assert_eq!(n.format, format, "{what}");
            assert_eq!(fps_of(&n), Some(expected_fps), "{what}");
            assert_eq!(n.fallback.is_some(), fallback, "{what}: {:?}", n.fallback);
        }
    }

    #[test]
    fn auto_says_why_it_left_yuyv() {
        let n = negotiate(&webcam(), mode(1280, 720, 30), CaptureFormat::Auto).unwrap();
        assert_eq!(n.fourcc, MJPG);
        assert_eq!(
            n.fallback.as_deref(),
            Some("camera offers YUYV 1280x720 only at 10 fps; using MJPEG 1280x720 at 30 fps")
        );
        let n = negotiate(&webcam(), mode(1920, 1080, 30), CaptureFormat::Auto).unwrap();
        assert_eq!(
            n.fallback.as_deref(),
            Some(
                "camera offers YUYV 1920x1080 only at 5 fps, camera offers MJPEG 1920x1080 only \
                 at 15 fps; using MJPEG 1920x1080 at 15 fps"
            )
        );
        let mjpeg_only = vec![webcam().remove(0)];
        let n = negotiate(&mjpeg_only, mode(640, 480, 30), CaptureFormat::Auto).unwrap();
        assert_eq!(
            n.fallback.as_deref(),
            Some("camera offers no YUYV; using MJPEG 640x480 at 30 fps")
        );
    }

    #[test]
    fn auto_takes_yuyv_on_a_tie_and_a_listed_rate_over_none() {
        let both_slow = vec![
            OfferedFormat {
                fourcc: MJPG,
                sizes: OfferedSizes::Discrete(vec![(640, 480, vec![rate(15)])]),
            },
            OfferedFormat {
                fourcc: YUYV,
                sizes: OfferedSizes::Discrete(vec![(640, 480, vec![rate(15)])]),
            },
        ];
        let n = negotiate(&both_slow, mode(640, 480, 30), CaptureFormat::Auto).unwrap();
        assert_eq!((n.format, fps_of(&n)), (PixelFormat::Yuyv, Some(15.0)));
        assert!(n.fallback.is_some());

        // YUYV reaching the rate beats MJPEG with no listed rates; unlisted beats slow.
        let unlisted_mjpeg = vec![
            OfferedFormat {
                fourcc: MJPG,
                sizes: OfferedSizes::Discrete(vec![(640, 480, vec![])]),
            },
            OfferedFormat {
                fourcc: YUYV,
                sizes: OfferedSizes::Discrete(vec![(640, 480, vec![rate(10), rate(30)])]),
            },
        ];
        let n = negotiate(&unlisted_mjpeg, mode(640, 480, 30), CaptureFormat::Auto).unwrap();
        assert_eq!((n.format, fps_of(&n)), (PixelFormat::Yuyv, Some(30.0)));
        let n = negotiate(&unlisted_mjpeg, mode(640, 480, 60), CaptureFormat::Auto).unwrap();
        assert_eq!((n.format, n.interval), (PixelFormat::Mjpeg, None));
        assert_eq!(
            n.fallback.as_deref(),
            Some(
                "camera offers YUYV 640x480 only at 30 fps, camera lists no MJPEG rates at \
                 640x480; using MJPEG 640x480 at the camera's own rate"
            )
        );
    }

    #[test]
    fn a_tie_between_rates_goes_to_the_faster() {
        let offered = vec![OfferedFormat {
            fourcc: YUYV,
            sizes: OfferedSizes::Discrete(vec![(640, 480, vec![rate(20), rate(30)])]),
        }];
        let n = negotiate(&offered, mode(640, 480, 25), CaptureFormat::Yuyv).unwrap();
        assert_eq!(n.interval, Some(rate(30)));
        // 29.97 counts as 30, and 30 itself is nearer.
        let offered = vec![OfferedFormat {
            fourcc: YUYV,
            sizes: OfferedSizes::Discrete(vec![(640, 480, vec![NTSC_30, rate(30), rate(60)])]),
        }];
        let n = negotiate(&offered, mode(640, 480, 30), CaptureFormat::Auto).unwrap();
        assert_eq!(n.interval, Some(rate(30)));
    }

    #[test]
    fn insisting_takes_that_format_even_when_slow_and_says_so() {
        let n = negotiate(&webcam(), mode(1280, 720, 30), CaptureFormat::Yuyv).unwrap();
        assert_eq!((n.format, fps_of(&n)), (PixelFormat::Yuyv, Some(10.0)));
        assert_eq!(
            n.fallback.as_deref(),
            Some(
                "camera offers YUYV 1280x720 only at 10 fps, below video.fps = 30; using YUYV \
                 1280x720 at 10 fps (capture.format = \"yuyv\")"
            )
        );
        let n = negotiate(&webcam(), mode(640, 480, 30), CaptureFormat::Mjpeg).unwrap();
        assert_eq!(
            (n.format, n.fourcc, fps_of(&n)),
            (PixelFormat::Mjpeg, MJPG, Some(30.0))
        );
        assert_eq!(n.fallback, None);
    }

    #[test]
    fn a_missing_format_or_size_is_refused_listing_what_the_camera_offers() {
        let yuyv_only = vec![webcam().remove(1)];
        let err = negotiate(&yuyv_only, mode(640, 480, 30), CaptureFormat::Mjpeg).unwrap_err();
        assert!(matches!(
            err,
            NegotiationError::FormatNotOffered {
                format: PixelFormat::Mjpeg,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "capture.format asks for MJPEG, but the camera offers no MJPEG (it offers: YUYV \
             640x480 at 30/15 fps, 1280x720 at 10/5 fps, 320x240 at 29.97 fps, 1920x1080 at 5 fps)"
        );
        for format in [
            CaptureFormat::Auto,
            CaptureFormat::Yuyv,
            CaptureFormat::Mjpeg,
        ] {
            let err = negotiate(&webcam(), mode(800, 608, 30), format).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("800x608")
                    && text.contains("video.width")
                    && text.contains("MJPG 1280x720 at 30/15 fps, 640x480 at 30 fps")
                    && text.contains("YUYV 640x480 at 30/15 fps"),
                "{format:?}: {text}"
            );
        }
        let err = negotiate(&[], mode(640, 480, 30), CaptureFormat::Auto).unwrap_err();
        assert!(err.to_string().ends_with("it offers: no formats"), "{err}");
    }

    #[test]
    fn other_formats_are_listed_but_never_chosen() {
        let offered = vec![
            OfferedFormat {
                fourcc: *b"H264",
                sizes: OfferedSizes::Discrete(vec![(640, 480, vec![rate(30)])]),
            },
            OfferedFormat {
                fourcc: JPEG,
                sizes: OfferedSizes::Discrete(vec![(640, 480, vec![rate(30)])]),
            },
        ];
        let n = negotiate(&offered, mode(640, 480, 30), CaptureFormat::Auto).unwrap();
        assert_eq!((n.format, n.fourcc), (PixelFormat::Mjpeg, JPEG));
        let err = negotiate(&offered[..1], mode(640, 480, 30), CaptureFormat::Auto).unwrap_err();
        assert!(err.to_string().contains("H264 640x480 at 30 fps"), "{err}");
    }

    #[test]
    fn stepwise_sizes_accept_sizes_on_their_grid_only() {
        let offered = vec![OfferedFormat {
            fourcc: YUYV,
            sizes: OfferedSizes::Stepwise {
                min: (160, 120),
                max: (1920, 1080),
                step: (16, 8),
            },
        }];
        for format in [CaptureFormat::Auto, CaptureFormat::Yuyv] {
            let n = negotiate(&offered, mode(640, 480, 30), format).unwrap();
            assert_eq!(n.interval, None, "stepwise devices do not list rates");
            assert!(negotiate(&offered, mode(644, 480, 30), format).is_err());
            assert!(negotiate(&offered, mode(3840, 2160, 30), format).is_err());
        }
    }

    #[test]
    fn capture_format_comes_from_the_configuration_and_unknown_values_are_refused() {
        use keymash_core::config::Config;
        assert_eq!(Config::default().capture.format, CaptureFormat::Auto);
        for (text, format) in [
            ("auto", CaptureFormat::Auto),
            ("yuyv", CaptureFormat::Yuyv),
            ("mjpeg", CaptureFormat::Mjpeg),
        ] {
            let config =
                Config::from_toml_str(&format!("[capture]\nformat = \"{text}\"\n")).unwrap();
            assert_eq!(config.capture.format, format);
        }
        for bad in ["MJPG", "h264", ""] {
            let err =
                Config::from_toml_str(&format!("[capture]\nformat = \"{bad}\"\n")).unwrap_err();
            assert_eq!(err.key(), Some("capture.format"), "{err}");
            assert!(err.to_string().contains("capture.format"), "{err}");
        }
    }

    #[test]
    fn a_driver_that_adjusts_the_format_is_caught() {
        let n = negotiate(&webcam(), mode(640, 480, 30), CaptureFormat::Auto).unwrap();
        assert_eq!(n.check_applied(YUYV, 640, 480), Ok(()));
        assert!(n.check_applied(YUYV, 320, 240).is_err());
        assert!(n.check_applied(MJPG, 640, 480).is_err());
        assert_eq!(n.to_string(), "YUYV 640x480 @ 30.00 fps (1/30 s)");
        let n = negotiate(&webcam(), mode(1280, 720, 30), CaptureFormat::Auto).unwrap();
        assert_eq!(n.check_applied(MJPG, 1280, 720), Ok(()));
        assert_eq!(
            n.check_applied(YUYV, 1280, 720).unwrap_err().to_string(),
            "asked for MJPG 1280x720, the driver set YUYV 1280x720"
        );
        assert_eq!(n.to_string(), "MJPEG 1280x720 @ 30.00 fps (1/30 s)");
    }
}
