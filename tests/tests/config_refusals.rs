//! One validation: every configuration a service refuses at start, `keymash check-config`
//! (which `install.sh` runs before installing) refuses too, naming the key, and every one of the
//! eight real service binaries refuses it with exit 78 (EX_CONFIG: systemd does not restart it
//! into the same refusal) and the very message check-config printed, before it creates a single
//! segment.
//!
//! The cases are grouped by the service that refused them before the check was shared (exit 1,
//! a panic, or exit 78 that check-config did not foresee); each group is one test.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use keymash_tests::{service_binary, unique_name};

/// The eight services; each is run with every refused configuration.
const SERVICES: [&str; 8] = [
    "keymash-capture",
    "keymash-delay-buffer",
    "keymash-encoder",
    "keymash-net-tx",
    "keymash-net-rx",
    "keymash-display",
    "keymash-mash-input",
    "keymash-loss-controller",
];

/// A refusal comes before anything slow; a service that does not refuse runs until this bound
/// and the test fails saying so.
const BOUND: Duration = Duration::from_secs(30);

/// One refused configuration: the keys changed from the base, and the key the refusal names.
struct Case {
    what: &'static str,
    set: &'static [(&'static str, &'static str, &'static str)],
    key: &'static str,
}

/// A configuration file every service accepts, in a directory of its own with a shared-memory
/// prefix of its own; both are removed on drop (segments too, should a service have made any).
struct Scratch {
    dir: PathBuf,
    prefix: String,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let name = unique_name(tag);
        let dir = std::env::temp_dir().join(format!("keymash-{name}"));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch {
            dir,
            prefix: format!("kmt{}", name.replace('-', "")),
        }
    }

    /// The base: nothing that needs a device, a key or a free well-known port, and an interface
    /// that does not exist, so a service that wrongly accepts a case fails on its own instead of
    /// filtering this machine's traffic.
    fn base(&self) -> Vec<(String, String, String)> {
        let port = 20_000 + (std::process::id() % 20_000) as u16;
        let entries = [
            ("shm", "prefix", format!("{:?}", self.prefix)),
            ("security", "mode", "\"none\"".to_owned()),
            ("capture", "source", "\"synthetic\"".to_owned()),
            (
                "display",
                "output",
                format!(
                    "{:?}",
                    format!("frames:{}", self.dir.join("frames").display())
                ),
            ),
            ("input", "source", "\"script:0-1s:5/s\"".to_owned()),
            ("loss", "interface", "\"kmtnone0\"".to_owned()),
            ("network", "sender_address", "\"127.0.0.1\"".to_owned()),
            ("network", "receiver_address", "\"127.0.0.1\"".to_owned()),
            ("network", "sender_port", port.to_string()),
            ("network", "video_port", (port + 1).to_string()),
        ];
        entries
            .into_iter()
            .map(|(section, key, value)| (section.to_owned(), key.to_owned(), value))
            .collect()
    }

    /// Writes the base with `set` applied and returns the file.
    fn write(&self, set: &[(&str, &str, &str)]) -> PathBuf {
        let mut entries = self.base();
        for &(section, key, value) in set {
            entries.retain(|(s, k, _)| !(s == section && k == key));
            entries.push((section.to_owned(), key.to_owned(), value.to_owned()));
        }
        let mut sections: Vec<&str> = entries.iter().map(|(s, _, _)| s.as_str()).collect();
        sections.sort_unstable();
        sections.dedup();
        let mut text = String::new();
        for section in sections {
            text.push_str(&format!("[{section}]\n"));
            for (_, key, value) in entries.iter().filter(|(s, _, _)| s == section) {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        let file = self.dir.join("keymash.toml");
        std::fs::write(&file, text).expect("write the configuration");
        file
    }

    /// Segments under this test's prefix (none may exist after a refusal).
    fn segments(&self) -> Vec<String> {
        std::fs::read_dir("/dev/shm")
            .expect("read /dev/shm")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{}.", self.prefix)))
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for name in self.segments() {
            let _ = std::fs::remove_file(Path::new("/dev/shm").join(name));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `program args` to its end within [`BOUND`] (killed and reported otherwise); returns its
/// exit status and what it wrote to stderr (through a file: a chatty service cannot block).
fn run_bounded(program: &Path, args: &[&std::ffi::OsStr], log: &Path) -> (ExitStatus, String) {
    let stderr = std::fs::File::create(log).expect("create the log file");
    let mut child = Command::new(program)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start the program");
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the program") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} was still running after {BOUND:?}: it did not refuse the configuration; log:\n{}",
                program.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

/// `keymash check-config --no-key FILE`: its exit status and message.
fn check_config(scratch: &Scratch, file: &Path) -> (ExitStatus, String) {
    run_bounded(
        &service_binary("keymash"),
        &[
            "check-config".as_ref(),
            "--no-key".as_ref(),
            file.as_os_str(),
        ],
        &scratch.dir.join("check-config.log"),
    )
}

/// For each case: check-config exits 78 naming the key, and every service exits 78 with the
/// same message and leaves no segment behind.
fn assert_refused_everywhere(tag: &str, cases: &[Case]) {
    let scratch = Scratch::new(tag);
    // The base itself is accepted, so each refusal below is the case's own.
    let base = scratch.write(&[]);
    let (status, log) = check_config(&scratch, &base);
    assert!(
        status.success(),
        "the base configuration is refused:\n{log}"
    );

    for case in cases {
        let file = scratch.write(case.set);
        let (status, message) = check_config(&scratch, &file);
        let message = message.trim().to_owned();
        assert_eq!(
            status.code(),
            Some(78),
            "{}: check-config did not refuse it: {message}",
            case.what
        );
        assert!(
            message.contains(&format!("`{}`", case.key)),
            "{}: check-config's message does not name `{}`: {message}",
            case.what,
            case.key
        );
        for service in SERVICES {
            let (status, log) = run_bounded(
                &service_binary(service),
                &["--config".as_ref(), file.as_os_str()],
                &scratch.dir.join(format!("{service}.log")),
            );
            assert_eq!(
                status.code(),
                Some(78),
                "{}: {service} exited {status}, not 78; log:\n{log}",
                case.what
            );
            assert!(
                log.contains(&message),
                "{}: {service} did not log check-config's message {message:?}; log:\n{log}",
                case.what
            );
            let left = scratch.segments();
            assert!(
                left.is_empty(),
                "{}: {service} created segments before refusing: {left:?}",
                case.what
            );
        }
    }
}

#[test]
fn what_the_delay_buffer_refuses_is_refused_by_check_config_and_every_service() {
    assert_refused_everywhere(
        "refuse-delay",
        &[
            Case {
                what: "600 s of delay beyond delay.max_memory_mib",
                set: &[
                    ("delay", "seconds", "600.0"),
                    ("delay", "max_memory_mib", "1024"),
                ],
                key: "delay.seconds",
            },
            Case {
                what: "a frame with more macroblocks than the codec numbers",
                set: &[
                    ("video", "width", "4096"),
                    ("video", "height", "4096"),
                    ("delay", "seconds", "1.0"),
                    ("delay", "max_memory_mib", "65536"),
                ],
                key: "video.width",
            },
            Case {
                what: "a prefix the shared-memory layer refuses",
                set: &[("shm", "prefix", "\"-kmt\"")],
                key: "shm.prefix",
            },
            Case {
                what: "a delay that is not a number",
                set: &[("delay", "seconds", "nan")],
                key: "delay.seconds",
            },
        ],
    );
}

#[test]
fn what_capture_refuses_is_refused_by_check_config_and_every_service() {
    assert_refused_everywhere(
        "refuse-capture",
        &[
            Case {
                what: "a Y4M source without a path",
                set: &[("capture", "source", "\"y4m:\"")],
                key: "capture.source",
            },
            Case {
                what: "a camera path with a NUL byte (the V4L2 crate panicked)",
                set: &[
                    ("capture", "source", "\"v4l2\""),
                    ("capture", "device", "\"/dev/video\\u0000\""),
                ],
                key: "capture.device",
            },
            Case {
                what: "a Y4M path with a NUL byte",
                set: &[("capture", "source", "\"y4m:/tmp/a\\u0000.y4m\"")],
                key: "capture.source",
            },
        ],
    );
}

#[test]
fn what_the_display_refuses_is_refused_by_check_config_and_every_service() {
    assert_refused_everywhere(
        "refuse-display",
        &[
            Case {
                what: "a headless canvas wider than the codec's 4096",
                set: &[
                    ("video", "width", "4096"),
                    ("video", "height", "1024"),
                    ("delay", "seconds", "1.0"),
                    ("delay", "max_memory_mib", "65536"),
                ],
                key: "display.glow_border_px",
            },
            Case {
                what: "a frames output without a directory",
                set: &[("display", "output", "\"frames:\"")],
                key: "display.output",
            },
            Case {
                what: "a frames directory with a NUL byte",
                set: &[("display", "output", "\"frames:/tmp/a\\u0000b\"")],
                key: "display.output",
            },
            Case {
                what: "a playout delay beyond 5 s",
                set: &[("display", "playout_max_ms", "60000")],
                key: "display.playout_max_ms",
            },
        ],
    );
}

#[test]
fn what_the_loss_controller_refuses_is_refused_by_check_config_and_every_service() {
    assert_refused_everywhere(
        "refuse-loss",
        &[
            Case {
                what: "an interface name with a NUL byte (aya refused it when attaching)",
                set: &[("loss", "interface", "\"eth\\u0000\"")],
                key: "loss.interface",
            },
            Case {
                what: "an interface name with a tab",
                set: &[("loss", "interface", "\"a\\tb\"")],
                key: "loss.interface",
            },
            Case {
                what: "a burst that ends with a probability the filter holds as 0",
                set: &[
                    ("loss", "model", "\"gilbert-elliott\""),
                    ("loss", "ge_r", "1e-12"),
                ],
                key: "loss.ge_r",
            },
            Case {
                what: "a loss curve exponent that is subnormal",
                set: &[("loss", "exponent", "1e-310")],
                key: "loss.exponent",
            },
        ],
    );
}

#[test]
fn what_net_tx_and_net_rx_refuse_is_refused_by_check_config_and_every_service() {
    assert_refused_everywhere(
        "refuse-transport",
        &[
            Case {
                what: "a subnormal pacing fraction",
                set: &[("transport", "pacing_fraction", "5e-324")],
                key: "transport.pacing_fraction",
            },
            Case {
                what: "a pacing fraction that spreads a frame over no time",
                set: &[("transport", "pacing_fraction", "1e-300")],
                key: "transport.pacing_fraction",
            },
            Case {
                what: "payloads larger than the transport sends",
                set: &[("codec", "max_payload_bytes", "1400")],
                key: "codec.max_payload_bytes",
            },
        ],
    );
}

#[test]
fn what_mash_input_refuses_is_refused_by_check_config_and_every_service() {
    assert_refused_everywhere(
        "refuse-mash",
        &[
            Case {
                what: "a script of 999999 keys a second",
                set: &[("input", "source", "\"script:0-1s:999999/s\"")],
                key: "input.source",
            },
            Case {
                what: "a script segment of 5e-324 s (mash-input died allocating its presses)",
                set: &[("input", "source", "\"script:0-5e-324s:200/s\"")],
                key: "input.source",
            },
            Case {
                what: "a FIFO path with a NUL byte",
                set: &[("input", "source", "\"fifo:/tmp/a\\u0000b\"")],
                key: "input.source",
            },
        ],
    );
}
