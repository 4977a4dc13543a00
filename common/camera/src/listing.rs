//! `keymash camera`: what each V4L2 device is and offers (what an installer otherwise asks
//! `v4l2-ctl --list-formats-ext --list-ctrls` for), and what keymash-capture would make of it
//! with the configuration: the mode it would negotiate and whether `[capture.controls]` fits.
//!
//! [`list_devices`] asks the devices; [`DeviceListing::render`] and [`DeviceListing::to_json`]
//! are pure (unit-tested on made-up devices). The controls are printed as TOML lines with the
//! value they have now, so an installer can copy the ones to change under `[capture.controls]`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use keymash_core::config::{CaptureFormat, ControlSetting};
use keymash_media::controls::{plan_controls, ControlKind, OfferedControl};
use keymash_media::negotiate::{
    describe_offered, fourcc_text, negotiate, CameraMode, OfferedFormat, OfferedSizes,
};
use v4l::Device;

use crate::controls::{current_value, offered_controls};
use crate::{camera_denied, offered_formats};

/// One device node and what it told us.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceListing {
    pub path: PathBuf,
    pub what: Listed,
}

/// What a device node is.
#[derive(Debug, Clone, PartialEq)]
pub enum Listed {
    /// It could not be opened or queried (the reason, with advice for a permission problem).
    Unreadable(String),
    Device(DeviceInfo),
}

/// What a V4L2 device said about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub card: String,
    pub driver: String,
    pub bus: String,
    /// False for a node that does not capture video (UVC makes a second, metadata-only node
    /// per camera).
    pub video_capture: bool,
    pub formats: Vec<OfferedFormat>,
    /// Each control with its value now (`None`: not readable, or no value).
    pub controls: Vec<(OfferedControl, Option<i64>)>,
    /// Formats or controls that could not be listed.
    pub problems: Vec<String>,
}

impl DeviceListing {
    /// The device, if it is one that captures video.
    pub fn camera(&self) -> Option<&DeviceInfo> {
        match &self.what {
            Listed::Device(info) if info.video_capture => Some(info),
            _ => None,
        }
    }
}

/// What keymash-capture would ask of a camera: the configuration's video mode, format and
/// controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub mode: CameraMode,
    pub format: CaptureFormat,
    pub controls: BTreeMap<String, ControlSetting>,
}

/// The device nodes to list: `device` alone if given, else every `/dev/video*` in number order.
pub fn list_devices(device: Option<&Path>) -> Vec<DeviceListing> {
    let paths = match device {
        Some(path) => vec![path.to_path_buf()],
        None => {
            let mut paths: Vec<PathBuf> = v4l::context::enum_devices()
                .iter()
                .map(|node| node.path().to_path_buf())
                .collect();
            paths.sort_by_key(|p| node_order(p));
            paths
        }
    };
    paths
        .into_iter()
        .map(|path| describe_device(&path))
        .collect()
}

/// `/dev/video10` after `/dev/video9`: by the number at the end of the name, then by name.
fn node_order(path: &Path) -> (u64, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let digits: String = name
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (digits.parse().unwrap_or(u64::MAX), name)
}

fn describe_device(path: &Path) -> DeviceListing {
    let listed = |what| DeviceListing {
        path: path.to_path_buf(),
        what,
    };
    let device = match Device::with_path(path) {
        Ok(device) => device,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return listed(Listed::Unreadable(camera_denied(path, &e)));
        }
        Err(e) => return listed(Listed::Unreadable(format!("cannot open: {e}"))),
    };
    let caps = match device.query_caps() {
        Ok(caps) => caps,
        Err(e) => {
            return listed(Listed::Unreadable(format!(
                "not a V4L2 device (VIDIOC_QUERYCAP: {e})"
            )))
        }
    };
    let video_capture = caps
        .capabilities
        .contains(v4l::capability::Flags::VIDEO_CAPTURE);
    let mut problems = Vec::new();
    let formats = if video_capture {
        offered_formats(&device).unwrap_or_else(|e| {
            problems.push(format!("cannot list formats: {e}"));
            Vec::new()
        })
    } else {
        Vec::new()
    };
    let controls = if video_capture {
        offered_controls(&device)
            .unwrap_or_else(|e| {
                problems.push(format!("cannot list controls: {e}"));
                Vec::new()
            })
            .into_iter()
            .map(|c| {
                let value = match c.kind {
                    ControlKind::Class | ControlKind::Button => None,
                    _ => current_value(&device, c.id),
                };
                (c, value)
            })
            .collect()
    } else {
        Vec::new()
    };
    listed(Listed::Device(DeviceInfo {
        card: caps.card,
        driver: caps.driver,
        bus: caps.bus,
        video_capture,
        formats,
        controls,
        problems,
    }))
}

/// Width of the `name = value` column of the control lines.
const CONTROL_COLUMN: usize = 34;

impl DeviceListing {
    /// The listing for people (see the module comment), ending with what keymash would use.
    pub fn render(&self, wanted: &Wanted) -> String {
        let mut out = String::new();
        let path = self.path.display();
        let info = match &self.what {
            Listed::Unreadable(why) => return format!("{path}: {why}\n"),
            Listed::Device(info) => info,
        };
        let _ = writeln!(
            out,
            "{path}: {} (driver {}, bus {})",
            info.card, info.driver, info.bus
        );
        if !info.video_capture {
            let _ = writeln!(
                out,
                "  not a video capture device (UVC gives each camera a second node for metadata \
                 only; use the other one)"
            );
            return out;
        }
        let _ = writeln!(out, "  formats:");
        if info.formats.is_empty() {
            let _ = writeln!(out, "    none");
        }
        for format in &info.formats {
            let _ = writeln!(
                out,
                "    {}",
                describe_offered(std::slice::from_ref(format))
            );
        }
        let _ = writeln!(
            out,
            "  controls, with their values now (copy a line under [capture.controls] to set it at \
             every open):"
        );
        if info.controls.is_empty() {
            let _ = writeln!(out, "    none");
        }
        for (control, value) in &info.controls {
            let _ = writeln!(out, "    {}", control_line(control, *value));
        }
        for problem in &info.problems {
            let _ = writeln!(out, "  {problem}");
        }
        let _ = writeln!(out, "  {}", self.verdict(wanted).join("\n  "));
        out
    }

    /// What keymash-capture would make of this camera with the configuration: the mode, and
    /// whether `[capture.controls]` fits. Empty for a node that is no camera.
    pub fn verdict(&self, wanted: &Wanted) -> Vec<String> {
        let Some(DeviceInfo {
            formats, controls, ..
        }) = self.camera()
        else {
            return Vec::new();
        };
        let mode = wanted.mode;
        let asked = format!(
            "video {}x{} at {} fps, capture.format = \"{}\"",
            mode.width,
            mode.height,
            mode.fps,
            format_name(wanted.format)
        );
        let mut lines = vec![match negotiate(formats, mode, wanted.format) {
            Ok(negotiated) => {
                let why = negotiated
                    .fallback
                    .as_ref()
                    .map(|f| format!("; {f}"))
                    .unwrap_or_default();
                format!("keymash would capture {negotiated} ({asked}){why}")
            }
            Err(e) => format!("keymash cannot capture from this camera ({asked}): {e}"),
        }];
        if !wanted.controls.is_empty() {
            let offered: Vec<OfferedControl> = controls.iter().map(|(c, _)| c.clone()).collect();
            lines.push(match plan_controls(&offered, &wanted.controls) {
                Ok(planned) => format!(
                    "capture.controls fit this camera; set in this order at every open: {}",
                    planned
                        .iter()
                        .map(|p| p.asked())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(e) => format!("capture.controls do not fit this camera: {e}"),
            });
        }
        lines
    }

    /// The same as JSON (`keymash camera --json`).
    pub fn to_json(&self, wanted: &Wanted) -> serde_json::Value {
        let path = self.path.display().to_string();
        match &self.what {
            Listed::Unreadable(why) => serde_json::json!({ "path": path, "error": why }),
            Listed::Device(info) => serde_json::json!({
                "path": path,
                "card": info.card,
                "driver": info.driver,
                "bus": info.bus,
                "video_capture": info.video_capture,
                "formats": info.formats.iter().map(format_json).collect::<Vec<_>>(),
                "controls": info.controls
                    .iter()
                    .filter(|(c, _)| c.kind != ControlKind::Class)
                    .map(|(c, value)| control_json(c, *value))
                    .collect::<Vec<_>>(),
                "problems": info.problems,
                "keymash": self.verdict(wanted),
            }),
        }
    }
}

fn format_name(format: CaptureFormat) -> &'static str {
    match format {
        CaptureFormat::Auto => "auto",
        CaptureFormat::Yuyv => "yuyv",
        CaptureFormat::Mjpeg => "mjpeg",
    }
}

/// `brightness = 0   # Brightness: integer -64..64, default 0`; a class as a heading; a control
/// the configuration cannot set commented out.
fn control_line(control: &OfferedControl, value: Option<i64>) -> String {
    if control.kind == ControlKind::Class {
        return format!("# {}", control.name);
    }
    let value = value.map_or_else(|| "?".to_owned(), |v| control.value_text(v));
    let setting = format!("{} = {value}", control.key());
    let comment = format!("# {}: {}", control.name, control.describe());
    if control.settable() {
        format!("{setting:<CONTROL_COLUMN$} {comment}")
    } else {
        format!("# {setting:<w$} {comment}", w = CONTROL_COLUMN - 2)
    }
}

fn format_json(format: &OfferedFormat) -> serde_json::Value {
    let sizes = match &format.sizes {
        OfferedSizes::Discrete(sizes) => serde_json::json!(sizes
            .iter()
            .map(|(w, h, intervals)| serde_json::json!({
                "width": w,
                "height": h,
                "intervals": intervals
                    .iter()
                    .map(|i| serde_json::json!({
                        "numerator": i.numerator,
                        "denominator": i.denominator,
                        "fps": i.fps(),
                    }))
                    .collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>()),
        OfferedSizes::Stepwise { min, max, step } => serde_json::json!({
            "min": [min.0, min.1],
            "max": [max.0, max.1],
            "step": [step.0, step.1],
        }),
    };
    serde_json::json!({ "fourcc": fourcc_text(format.fourcc), "sizes": sizes })
}

fn control_json(control: &OfferedControl, value: Option<i64>) -> serde_json::Value {
    serde_json::json!({
        "name": control.key(),
        "kernel_name": control.name,
        "id": control.id,
        "description": control.describe(),
        "minimum": control.minimum,
        "maximum": control.maximum,
        "step": control.step,
        "default": control.default,
        "value": value,
        "value_toml": value.map(|v| control.value_text(v)),
        "menu": control
            .menu
            .iter()
            .map(|e| serde_json::json!({ "index": e.index, "label": e.label }))
            .collect::<Vec<_>>(),
        "settable": control.settable(),
        "inactive": control.inactive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymash_media::controls::MenuEntry;
    use keymash_media::negotiate::FrameInterval;

    fn webcam() -> DeviceListing {
        let at = |fps: u32| FrameInterval {
            numerator: 1,
            denominator: fps,
        };
        let integer = |id, name: &str, min, max, default| OfferedControl {
            id,
            name: name.to_owned(),
            kind: ControlKind::Integer,
            minimum: min,
            maximum: max,
            step: 1,
            default,
            menu: Vec::new(),
            read_only: false,
            inactive: false,
        };
        DeviceListing {
            path: PathBuf::from("/dev/video0"),
            what: Listed::Device(DeviceInfo {
                card: "HD Webcam".to_owned(),
                driver: "uvcvideo".to_owned(),
                bus: "usb-0000:00:14.0-9".to_owned(),
                video_capture: true,
                formats: vec![
                    OfferedFormat {
                        fourcc: *b"MJPG",
                        sizes: OfferedSizes::Discrete(vec![(640, 480, vec![at(30)])]),
                    },
                    OfferedFormat {
                        fourcc: *b"YUYV",
                        sizes: OfferedSizes::Discrete(vec![
                            (640, 480, vec![at(30), at(15)]),
                            (1280, 720, vec![at(10)]),
                        ]),
                    },
                ],
                controls: vec![
                    (
                        OfferedControl {
                            kind: ControlKind::Class,
                            ..integer(0x0098_0001, "User Controls", 0, 0, 0)
                        },
                        None,
                    ),
                    (integer(0x0098_0900, "Brightness", -64, 64, 0), Some(5)),
                    (
                        OfferedControl {
                            kind: ControlKind::Menu,
                            menu: vec![
                                MenuEntry {
                                    index: 1,
                                    label: "Manual Mode".to_owned(),
                                },
                                MenuEntry {
                                    index: 3,
                                    label: "Aperture Priority Mode".to_owned(),
                                },
                            ],
                            ..integer(0x009a_0901, "Auto Exposure", 0, 3, 3)
                        },
                        Some(3),
                    ),
                    (
                        OfferedControl {
                            read_only: true,
                            ..integer(0x009a_0999, "Pan Speed", -1, 1, 0)
                        },
                        Some(0),
                    ),
                ],
                problems: Vec::new(),
            }),
        }
    }

    fn wanted(width: u32, height: u32, controls: &[(&str, ControlSetting)]) -> Wanted {
        Wanted {
            mode: CameraMode {
                width,
                height,
                fps: 30,
            },
            format: CaptureFormat::Auto,
            controls: controls
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn a_camera_is_listed_with_formats_controls_as_toml_and_the_mode_keymash_would_use() {
        let text = webcam().render(&wanted(640, 480, &[]));
        assert_eq!(
            text,
            "/dev/video0: HD Webcam (driver uvcvideo, bus usb-0000:00:14.0-9)\n\
             \x20 formats:\n\
             \x20   MJPG 640x480 at 30 fps\n\
             \x20   YUYV 640x480 at 30/15 fps, 1280x720 at 10 fps\n\
             \x20 controls, with their values now (copy a line under [capture.controls] to set \
             it at every open):\n\
             \x20   # User Controls\n\
             \x20   brightness = 5                     # Brightness: integer -64..64, default 0\n\
             \x20   auto_exposure = \"Aperture Priority Mode\" # Auto Exposure: menu 1 \"Manual \
             Mode\", 3 \"Aperture Priority Mode\", default \"Aperture Priority Mode\"\n\
             \x20   # pan_speed = 0                    # Pan Speed: integer -1..1, default 0, \
             read-only\n\
             \x20 keymash would capture YUYV 640x480 @ 30.00 fps (1/30 s) (video 640x480 at 30 \
             fps, capture.format = \"auto\")\n"
        );
    }

    #[test]
    fn the_verdict_says_why_a_mode_or_a_control_does_not_fit() {
        let lines = webcam().verdict(&wanted(
            1280,
            720,
            &[(
                "auto_exposure",
                ControlSetting::MenuItem("Manual".to_owned()),
            )],
        ));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "keymash would capture YUYV 1280x720 @ 10.00 fps (1/10 s) (video 1280x720 at 30 \
                 fps, capture.format = \"auto\"); camera offers YUYV 1280x720 only at 10 fps"
            ),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with(
                "capture.controls do not fit this camera: capture.controls.auto_exposure = \
                 \"Manual\" is not one of its items"
            ),
            "{}",
            lines[1]
        );
        let lines = webcam().verdict(&wanted(
            320,
            240,
            &[("brightness", ControlSetting::Integer(3))],
        ));
        assert!(
            lines[0].starts_with("keymash cannot capture from this camera (video 320x240"),
            "{}",
            lines[0]
        );
        assert_eq!(
            lines[1],
            "capture.controls fit this camera; set in this order at every open: brightness = 3"
        );
    }

    #[test]
    fn a_metadata_node_and_an_unreadable_node_say_what_they_are() {
        let mut node = webcam();
        if let Listed::Device(info) = &mut node.what {
            info.video_capture = false;
        }
        let text = node.render(&wanted(640, 480, &[]));
        assert!(text.contains("not a video capture device"), "{text}");
        assert!(!text.contains("formats"), "{text}");
        assert!(node.verdict(&wanted(640, 480, &[])).is_empty());
        let node = DeviceListing {
            path: PathBuf::from("/dev/video3"),
            what: Listed::Unreadable("cannot open: No such device".to_owned()),
        };
        assert_eq!(
            node.render(&wanted(640, 480, &[])),
            "/dev/video3: cannot open: No such device\n"
        );
    }

    #[test]
    fn json_has_every_control_but_class_headings() {
        let json = webcam().to_json(&wanted(640, 480, &[]));
        let names: Vec<&str> = json["controls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["brightness", "auto_exposure", "pan_speed"]);
        assert_eq!(
            json["controls"][1]["value_toml"],
            "\"Aperture Priority Mode\""
        );
        assert_eq!(json["formats"][1]["sizes"][1]["width"], 1280);
    }

    #[test]
    fn device_nodes_are_in_number_order() {
        let mut paths: Vec<PathBuf> = ["/dev/video10", "/dev/video2", "/dev/video0"]
            .iter()
            .map(PathBuf::from)
            .collect();
        paths.sort_by_key(|p| node_order(p));
        assert_eq!(
            paths,
            ["/dev/video0", "/dev/video2", "/dev/video10"].map(PathBuf::from)
        );
    }
}
