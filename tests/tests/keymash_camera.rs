//! `keymash camera` with the fake V4L2 camera (`tests/fake-v4l2/`) preloaded:
//!
//! - The listing shows the fake's formats (YUYV at two sizes, MJPEG), their rates, its controls
//!   as `[capture.controls]` lines with ranges and menu items, and the mode keymash-capture would
//!   negotiate with the configuration; `--json` says the same; a missing device is a message.
//! - `--snapshot x.y4m` is a source frame exactly as the raw-frame ring gets it (packed YUYV is
//!   lossless), opened with the configuration's controls; `--snapshot x.png` is that picture in
//!   RGB at the configured size.
//! - A snapshot with a control the camera lacks says which, and what the camera offers; one
//!   that gets too few frames in `--timeout` says how many came.
//! - `keymash check-config` refuses what it can decide about `[capture.controls]` without a
//!   camera (a value of another TOML type, a name not in `keymash camera`'s form), naming it.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keymash_codec::y4m::Y4mReader;
use keymash_codec::{FrameGeometry, I420Frame};
use keymash_tests::fake_v4l2::{synthetic_yuyv, yuyv_as_i420, FakeCamera};
use keymash_tests::{service_binary, unique_name};

const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;
const SOURCE_FRAMES: usize = 6;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("keymash-{}", unique_name(tag)));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fake offering YUYV at 320x240 and 160x120 and MJPEG at 320x240, at 30 and 15 fps.
fn camera(tag: &str, source: &[Vec<u8>]) -> FakeCamera {
    let jpegs: Vec<Vec<u8>> = source
        .iter()
        .map(|yuyv| {
            let i420 = yuyv_as_i420(WIDTH, HEIGHT, yuyv);
            let mut jpeg = Vec::new();
            let planes = [i420.y(), i420.u(), i420.v()].concat();
            keymash_watch::jpeg::encode_i420(&planes, WIDTH, HEIGHT, 90, &mut jpeg).unwrap();
            jpeg
        })
        .collect();
    let mut camera = FakeCamera::new(tag, WIDTH, HEIGHT);
    camera
        .yuyv_frames(source)
        .mjpeg_frames(&jpegs)
        .set("FPS", "30,15")
        .set("EXTRA_SIZE", "160x120")
        .set("FORMATS", "yuyv,mjpeg");
    camera
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("keymash.toml");
    std::fs::write(
        &path,
        format!("[video]\nwidth = {WIDTH}\nheight = {HEIGHT}\nfps = 30\n{extra}"),
    )
    .unwrap();
    path
}

fn keymash_camera(camera: &FakeCamera, config: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(service_binary("keymash"));
    command.arg("camera").arg("--config").arg(config).args(args);
    camera.apply(&mut command);
    command.output().unwrap()
}

/// A snapshot with `extra` arguments that must fail without writing its file; its stderr.
fn failed_snapshot(camera: &FakeCamera, config: &Path, dir: &Path, extra: &[&str]) -> String {
    let snapshot = dir.join("refused.png");
    let mut args = vec!["--device", camera.device_path()];
    args.extend_from_slice(extra);
    args.extend(["--snapshot", snapshot.to_str().unwrap()]);
    let output = keymash_camera(camera, config, &args);
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(!snapshot.exists(), "{stderr}");
    stderr
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn keymash_camera_lists_the_fake_cameras_formats_rates_and_controls() {
    let scratch = Scratch::new("camera-list");
    let camera = camera("camera-list", &synthetic_yuyv(WIDTH, HEIGHT, SOURCE_FRAMES));
    let config = write_config(
        &scratch.0,
        "[capture.controls]\nexposure_time_absolute = 400\nauto_exposure = \"Manual Mode\"\n",
    );
    let output = keymash_camera(&camera, &config, &["--device", camera.device_path()]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let device = camera.device_path();
    let expected = [
        format!("{device}: Keymash Fake Webcam (driver uvcvideo, bus usb-0000:00:14.0-9)"),
        "  formats:".to_owned(),
        "    YUYV 320x240 at 30/15 fps, 160x120 at 30/15 fps".to_owned(),
        "    MJPG 320x240 at 30/15 fps".to_owned(),
        "    # User Controls".to_owned(),
        "    brightness = 0                     # Brightness: integer -64..64, default 0".to_owned(),
        "    white_balance_automatic = true     # White Balance, Automatic: boolean, default true"
            .to_owned(),
        "    power_line_frequency = \"50 Hz\"     # Power Line Frequency: menu 0 \"Disabled\", 1 \
         \"50 Hz\", 2 \"60 Hz\", default \"50 Hz\""
            .to_owned(),
        "    # Camera Controls".to_owned(),
        "    auto_exposure = \"Aperture Priority Mode\" # Auto Exposure: menu 1 \"Manual Mode\", 3 \
         \"Aperture Priority Mode\", default \"Aperture Priority Mode\""
            .to_owned(),
        "    exposure_time_absolute = 250       # Exposure Time, Absolute: integer 3..2047, \
         default 250, inactive now"
            .to_owned(),
        "  keymash would capture YUYV 320x240 @ 30.00 fps (1/30 s) (video 320x240 at 30 fps, \
         capture.format = \"auto\")"
            .to_owned(),
        "  capture.controls fit this camera; set in this order at every open: auto_exposure = \
         \"Manual Mode\", exposure_time_absolute = 400"
            .to_owned(),
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    for line in &expected {
        assert!(
            lines.contains(&line.as_str()),
            "missing line\n{line}\nin\n{stdout}"
        );
    }
    // Listing sets nothing.
    assert!(camera.events_of("ctrl").is_empty());
    assert!(camera.events_of("streamon").is_empty());

    let output = keymash_camera(&camera, &config, &["--device", device, "--json"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let fake = &json[0];
    assert_eq!(fake["video_capture"], true);
    assert_eq!(fake["formats"].as_array().map(Vec::len), Some(2));
    assert_eq!(fake["formats"][0]["fourcc"], "YUYV");
    assert_eq!(fake["formats"][0]["sizes"][1]["width"], 160);
    assert_eq!(fake["formats"][1]["fourcc"], "MJPG");
    let controls: Vec<(&str, i64)> = fake["controls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["value"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        controls,
        [
            ("brightness", 0),
            ("white_balance_automatic", 1),
            ("power_line_frequency", 1),
            ("auto_exposure", 3),
            ("exposure_time_absolute", 250)
        ]
    );
    assert_eq!(
        fake["controls"][3]["menu"][1]["label"],
        "Aperture Priority Mode"
    );

    // A path with no device behind it is a message, not a dump.
    let missing = scratch.0.join("video-none");
    let output = keymash_camera(&camera, &config, &["--device", missing.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success());
    assert_eq!(
        stdout,
        format!(
            "{}: cannot open: No such file or directory (os error 2)\n",
            missing.display()
        ),
        "{stderr}"
    );
    println!(
        "{}",
        text(&keymash_camera(&camera, &config, &["--device", device])).0
    );
}

#[test]
fn a_snapshot_is_the_frame_the_pipeline_would_get_as_y4m_and_as_png() {
    let scratch = Scratch::new("camera-snapshot");
    let source = synthetic_yuyv(WIDTH, HEIGHT, SOURCE_FRAMES);
    let mut camera = camera("camera-snapshot", &source);
    // YUYV, as capture.format = "yuyv" makes capture do.
    camera.set("FORMATS", "mjpeg,yuyv");
    let config = write_config(
        &scratch.0,
        "[capture]\nformat = \"yuyv\"\n[capture.controls]\nbrightness = 20\n",
    );
    let geometry = FrameGeometry::new(WIDTH as usize, HEIGHT as usize).unwrap();
    let expected: Vec<I420Frame> = source
        .iter()
        .map(|yuyv| yuyv_as_i420(WIDTH, HEIGHT, yuyv))
        .collect();

    let device = camera.device_path();
    // The fourth frame delivered: three skipped.
    let snapshot = |file: &Path| {
        let args = ["--device", device, "--skip", "3", "--snapshot"];
        keymash_camera(
            &camera,
            &config,
            &[&args[..], &[file.to_str().unwrap()]].concat(),
        )
    };
    let y4m = scratch.0.join("snapshot.y4m");
    let output = snapshot(&y4m);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("{device} YUYV 320x240 @ 30.00 fps")),
        "{stderr}"
    );
    let mut reader = Y4mReader::new(std::fs::File::open(&y4m).unwrap()).unwrap();
    assert_eq!(reader.header().geometry, geometry);
    let mut picture = I420Frame::grey(geometry);
    assert!(reader.read_frame(&mut picture).unwrap());
    assert!(!reader.read_frame(&mut picture).unwrap(), "one frame only");
    let source_index = expected
        .iter()
        .position(|frame| {
            (frame.y(), frame.u(), frame.v()) == (picture.y(), picture.u(), picture.v())
        })
        .unwrap_or_else(|| panic!("the snapshot is no source frame\n{stderr}"));
    // Opened with the configured control.
    let dequeued = camera.events_of("dqbuf");
    assert!(dequeued.len() >= 4, "{}", camera.log_tail(20));
    let ctrl = camera.events_of("ctrl");
    assert_eq!(ctrl.len(), 1, "{}", camera.log_tail(20));
    assert_eq!(ctrl[0].fields[1..3], ["brightness", "20"]);

    let png_path = scratch.0.join("snapshot.png");
    let output = snapshot(&png_path);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let decoder = png::Decoder::new(std::fs::File::open(&png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut rgb = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut rgb).unwrap();
    assert_eq!(
        (info.width, info.height, info.color_type),
        (WIDTH, HEIGHT, png::ColorType::Rgb)
    );
    rgb.truncate(info.buffer_size());
    // Some source frame, converted as the display converts pictures.
    let matches = expected.iter().any(|frame| {
        let mut want = Vec::new();
        keymash_present::i420_to_rgb(frame.view(), &mut want);
        want == rgb
    });
    assert!(matches, "the PNG is no source frame in RGB\n{stderr}");

    // A file name that is neither: refused before the camera is opened.
    let opens = camera.events_of("open").len();
    let output = snapshot(Path::new("x.jpg"));
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("name a .y4m file"), "{stderr}");
    assert_eq!(camera.events_of("open").len(), opens);
    println!("snapshot: source frame {source_index}, PNG {WIDTH}x{HEIGHT}");
}

#[test]
fn a_snapshot_with_a_control_the_camera_lacks_says_which_and_what_it_offers() {
    let scratch = Scratch::new("camera-refused");
    let camera = camera(
        "camera-refused",
        &synthetic_yuyv(WIDTH, HEIGHT, SOURCE_FRAMES),
    );
    let config = write_config(&scratch.0, "[capture.controls]\nzoom_absolute = 3\n");
    let stderr = failed_snapshot(&camera, &config, &scratch.0, &[]);
    assert!(
        stderr.contains(
            "capture.controls.zoom_absolute: the camera has no such control; it offers: \
             brightness (integer -64..64, default 0);"
        ),
        "{stderr}"
    );
    assert!(camera.events_of("streamon").is_empty());
}

#[test]
fn check_config_refuses_what_it_can_decide_without_a_camera_naming_the_control() {
    let scratch = Scratch::new("camera-check-config");
    let cases = [
        ("brightness = 1.5", "`capture.controls.brightness`: an integer, true/false, or a menu item's name in quotes"),
        ("\"Exposure Time, Absolute\" = 250", "`capture.controls`: control \"Exposure Time, Absolute\": write its name as `keymash camera` and `v4l2-ctl --list-ctrls` print it, `exposure_time_absolute`"),
        ("\"\" = 1", "`capture.controls`: \"\" is no control name"),
    ];
    for (line, refusal) in cases {
        let config = write_config(&scratch.0, &format!("[capture.controls]\n{line}\n"));
        let output = Command::new(service_binary("keymash"))
            .args(["check-config", "--no-key"])
            .arg(&config)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(78), "{line}: {stdout}{stderr}");
        assert!(stderr.contains(refusal), "{line}: {stderr}");
    }
    // Names, values and types the camera decides are accepted here.
    let config = write_config(
        &scratch.0,
        "[capture.controls]\nzoom_absolute = 5000\nauto_exposure = \"Manual Mode\"\n\
         white_balance_automatic = false\n",
    );
    let output = Command::new(service_binary("keymash"))
        .args(["check-config", "--no-key"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
}

#[test]
fn a_snapshot_that_gets_no_frame_in_time_says_how_many_arrived() {
    let scratch = Scratch::new("camera-timeout");
    let mut camera = camera(
        "camera-timeout",
        &synthetic_yuyv(WIDTH, HEIGHT, SOURCE_FRAMES),
    );
    // Ten frames a second: the 31st cannot come within the 1.5 s allowed. Not slower: below
    // 5 fps a frame interval is longer than keymash-camera's 200 ms poll timeout, after which
    // the `v4l` crate queues a buffer that is still queued and the stream fails with EINVAL.
    camera.set("FPS", "10");
    let config = write_config(&scratch.0, "");
    let stderr = failed_snapshot(
        &camera,
        &config,
        &scratch.0,
        &["--skip", "30", "--timeout", "1.5"],
    );
    assert!(
        stderr.contains("no whole frame within 1.5 s (")
            && stderr.contains(" of 31 arrived; the camera: /dev/"),
        "{stderr}"
    );
}
