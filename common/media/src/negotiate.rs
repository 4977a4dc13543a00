//! V4L2 format negotiation as pure code: from what a camera offers (VIDIOC_ENUM_FMT,
//! ENUM_FRAMESIZES, ENUM_FRAMEINTERVALS), pick YUYV at the configured size and the offered
//! frame rate closest to the configured one. The capture service asks the device, calls
//! [`negotiate_yuyv`], sets the result, and checks with [`Negotiated::check_applied`] what the
//! driver really accepted (drivers may silently adjust).

use std::fmt;

/// The FourCC of packed YUYV 4:2:2, the format the pipeline captures.
pub const YUYV: [u8; 4] = *b"YUYV";

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub width: u32,
    pub height: u32,
    /// The interval to request; `None` if the device lists no rates (it keeps its own).
    pub interval: Option<FrameInterval>,
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
        if fourcc != YUYV || (width, height) != (self.width, self.height) {
            return Err(NegotiationError::DeviceChangedFormat {
                wanted: (self.width, self.height),
                got: format!("{} {width}x{height}", fourcc_text(fourcc)),
            });
        }
        Ok(())
    }
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "YUYV {}x{}", self.width, self.height)?;
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

/// Why no usable mode was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("the device offers no YUYV format (it offers: {offered})")]
    NoYuyv { offered: String },
    #[error("the device offers YUYV only at {offered}, not the configured {width}x{height} (`video.width`/`video.height`)")]
    SizeNotOffered {
        width: u32,
        height: u32,
        offered: String,
    },
    #[error("asked for YUYV {}x{}, the driver set {got}", wanted.0, wanted.1)]
    DeviceChangedFormat { wanted: (u32, u32), got: String },
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

/// Picks YUYV at exactly `wanted`'s size (the pipeline does not scale) and, of the intervals the
/// device offers at that size, the one whose rate is closest to `wanted.fps` (on a tie, the
/// faster: a frame too many is skipped downstream, a frame too few is a stutter).
pub fn negotiate_yuyv(
    offered: &[OfferedFormat],
    wanted: CameraMode,
) -> Result<Negotiated, NegotiationError> {
    let yuyv =
        offered
            .iter()
            .find(|f| f.fourcc == YUYV)
            .ok_or_else(|| NegotiationError::NoYuyv {
                offered: offered
                    .iter()
                    .map(|f| fourcc_text(f.fourcc))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
    let size = (wanted.width, wanted.height);
    let intervals: Vec<FrameInterval> = match &yuyv.sizes {
        OfferedSizes::Discrete(sizes) => {
            let (_, _, intervals) =
                sizes
                    .iter()
                    .find(|(w, h, _)| (*w, *h) == size)
                    .ok_or_else(|| NegotiationError::SizeNotOffered {
                        width: wanted.width,
                        height: wanted.height,
                        offered: sizes
                            .iter()
                            .map(|(w, h, _)| format!("{w}x{h}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?;
            intervals.clone()
        }
        OfferedSizes::Stepwise { min, max, step } => {
            let on_grid = |v: u32, lo: u32, hi: u32, step: u32| {
                (lo..=hi).contains(&v) && (step == 0 || (v - lo).is_multiple_of(step))
            };
            if !(on_grid(size.0, min.0, max.0, step.0) && on_grid(size.1, min.1, max.1, step.1)) {
                return Err(NegotiationError::SizeNotOffered {
                    width: wanted.width,
                    height: wanted.height,
                    offered: format!(
                        "{}x{} to {}x{} in steps of {}x{}",
                        min.0, min.1, max.0, max.1, step.0, step.1
                    ),
                });
            }
            Vec::new()
        }
    };
    let target = f64::from(wanted.fps);
    let interval = intervals
        .into_iter()
        .filter(|i| i.numerator > 0 && i.denominator > 0)
        .min_by(|a, b| {
            let (da, db) = ((a.fps() - target).abs(), (b.fps() - target).abs());
            da.total_cmp(&db).then(b.fps().total_cmp(&a.fps()))
        });
    Ok(Negotiated {
        width: wanted.width,
        height: wanted.height,
        interval,
    })
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

    /// A typical UVC webcam: MJPG at everything, YUYV at full rate only when small.
    fn webcam() -> Vec<OfferedFormat> {
        vec![
            OfferedFormat {
                fourcc: *b"MJPG",
                sizes: OfferedSizes::Discrete(vec![
                    (1280, 720, vec![rate(30)]),
                    (640, 480, vec![rate(30)]),
                ]),
            },
            OfferedFormat {
                fourcc: YUYV,
                sizes: OfferedSizes::Discrete(vec![
                    (640, 480, vec![rate(30), rate(15)]),
                    (1280, 720, vec![rate(10), rate(5)]),
                    (
                        320,
                        240,
                        vec![FrameInterval {
                            numerator: 1001,
                            denominator: 30000,
                        }],
                    ),
                ]),
            },
        ]
    }

    #[test]
    fn negotiation_picks_yuyv_at_the_size_and_the_nearest_rate() {
        let cases = [
            // (width, height, fps) -> interval fps
            ((640, 480, 30), Some(30.0)),
            ((640, 480, 20), Some(15.0)),
            ((640, 480, 25), Some(30.0)),
            ((1280, 720, 30), Some(10.0)),
            ((320, 240, 30), Some(30000.0 / 1001.0)),
        ];
        for ((width, height, fps), expected) in cases {
            let n = negotiate_yuyv(&webcam(), CameraMode { width, height, fps }).unwrap();
            assert_eq!((n.width, n.height), (width, height));
            assert_eq!(
                n.interval.map(FrameInterval::fps),
                expected,
                "{width}x{height}@{fps}"
            );
        }
    }

    #[test]
    fn a_tie_between_rates_goes_to_the_faster() {
        let offered = vec![OfferedFormat {
            fourcc: YUYV,
            sizes: OfferedSizes::Discrete(vec![(640, 480, vec![rate(20), rate(30)])]),
        }];
        let n = negotiate_yuyv(
            &offered,
            CameraMode {
                width: 640,
                height: 480,
                fps: 25,
            },
        )
        .unwrap();
        assert_eq!(n.interval, Some(rate(30)));
    }

    #[test]
    fn a_camera_without_yuyv_or_the_size_is_refused_with_what_it_offers() {
        let mjpg_only = vec![webcam().remove(0)];
        let err = negotiate_yuyv(
            &mjpg_only,
            CameraMode {
                width: 640,
                height: 480,
                fps: 30,
            },
        )
        .unwrap_err();
        assert_eq!(
            err,
            NegotiationError::NoYuyv {
                offered: "MJPG".to_owned()
            }
        );
        let err = negotiate_yuyv(
            &webcam(),
            CameraMode {
                width: 800,
                height: 600,
                fps: 30,
            },
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("640x480, 1280x720, 320x240") && text.contains("video.width"),
            "{text}"
        );
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
        let n = negotiate_yuyv(
            &offered,
            CameraMode {
                width: 640,
                height: 480,
                fps: 30,
            },
        )
        .unwrap();
        assert_eq!(n.interval, None, "stepwise devices do not list rates");
        assert!(negotiate_yuyv(
            &offered,
            CameraMode {
                width: 644,
                height: 480,
                fps: 30
            }
        )
        .is_err());
        assert!(negotiate_yuyv(
            &offered,
            CameraMode {
                width: 3840,
                height: 2160,
                fps: 30
            }
        )
        .is_err());
    }

    #[test]
    fn a_driver_that_adjusts_the_format_is_caught() {
        let n = negotiate_yuyv(
            &webcam(),
            CameraMode {
                width: 640,
                height: 480,
                fps: 30,
            },
        )
        .unwrap();
        assert_eq!(n.check_applied(YUYV, 640, 480), Ok(()));
        assert!(n.check_applied(YUYV, 320, 240).is_err());
        assert!(n.check_applied(*b"MJPG", 640, 480).is_err());
        assert_eq!(n.to_string(), "YUYV 640x480 @ 30.00 fps (1/30 s)");
    }
}
