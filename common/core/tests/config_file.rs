//! The configuration file: defaults, the annotated example, and one test per class of refusal,
//! each checking that the message names the key.

use keymash_core::config::{Config, ConfigError, PayloadLayout};

fn refused(text: &str) -> ConfigError {
    match Config::from_toml_str(text) {
        Ok(c) => panic!("accepted a bad configuration: {text:?} -> {c:?}"),
        Err(e) => e,
    }
}

fn assert_names_key(text: &str, key: &str) {
    let e = refused(text);
    assert_eq!(e.key(), Some(key), "error {e} for {text:?}");
    assert!(
        e.to_string().contains(key),
        "message {e:?} does not name {key}"
    );
}

#[test]
fn an_empty_file_is_the_default_configuration() {
    assert_eq!(Config::from_toml_str("").unwrap(), Config::default());
}

#[test]
fn the_annotated_example_is_exactly_the_defaults() {
    assert_eq!(
        Config::from_toml_str(Config::example_toml()).unwrap(),
        Config::default()
    );
}

#[test]
fn every_key_has_a_comment_in_the_annotated_example() {
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let example = Config::example_toml();
    let lines: Vec<&str> = example.lines().collect();
    let toml::Value::Table(sections) = defaults else {
        panic!("defaults are not a table")
    };
    for (section, keys) in sections {
        let toml::Value::Table(keys) = keys else {
            panic!("[{section}] is not a table")
        };
        let header = lines
            .iter()
            .position(|l| l.trim() == format!("[{section}]"))
            .unwrap_or_else(|| panic!("example has no [{section}] section"));
        for key in keys.keys() {
            let at = lines[header..]
                .iter()
                .position(|l| l.starts_with(&format!("{key} =")))
                .map(|i| i + header)
                .unwrap_or_else(|| panic!("example lacks {section}.{key}"));
            assert!(
                lines[at - 1].starts_with('#'),
                "{section}.{key} has no comment above it"
            );
        }
    }
}

#[test]
fn a_partial_file_keeps_defaults_for_the_rest() {
    let c = Config::from_toml_str("[codec]\nquality = 80\nlayout = \"dispersed\"\n").unwrap();
    assert_eq!(c.codec.quality.get(), 80);
    assert_eq!(c.codec.layout, PayloadLayout::Dispersed);
    assert_eq!(c.video, Config::default().video);
}

#[test]
fn an_unknown_key_in_a_section_is_refused_by_name() {
    assert_names_key("[codec]\nqualty = 80\n", "codec.qualty");
}

#[test]
fn an_unknown_section_is_refused_by_name() {
    assert_names_key("[codek]\nquality = 80\n", "codek");
}

#[test]
fn a_value_of_the_wrong_type_is_refused_by_key() {
    assert_names_key("[video]\nfps = \"thirty\"\n", "video.fps");
}

#[test]
fn an_out_of_range_quality_is_refused_by_key() {
    assert_names_key("[codec]\nquality = 0\n", "codec.quality");
    assert_names_key("[codec]\nquality = 101\n", "codec.quality");
}

#[test]
fn an_out_of_range_probability_is_refused_by_key() {
    assert_names_key("[loss]\ndrop_at_rest = 1.5\n", "loss.drop_at_rest");
}

#[test]
fn an_unknown_enum_value_is_refused_by_key() {
    assert_names_key("[codec]\nlayout = \"zigzag\"\n", "codec.layout");
}

#[test]
fn sources_and_outputs_parse_from_kind_colon_argument() {
    use keymash_core::config::{CaptureSource, DisplayOutput, InputSource};
    let c = Config::from_toml_str(
        "[capture]\nsource = \"y4m:/tmp/a.y4m\"\n[display]\noutput = \"frames:/tmp/f\"\n[input]\nsource = \"fifo:/run/k\"\n",
    )
    .unwrap();
    assert_eq!(c.capture.source, CaptureSource::Y4m("/tmp/a.y4m".into()));
    assert_eq!(c.display.output, DisplayOutput::Frames("/tmp/f".into()));
    assert_eq!(c.input.source, InputSource::Fifo("/run/k".into()));
    assert_names_key("[capture]\nsource = \"webcam\"\n", "capture.source");
    assert_names_key("[capture]\nsource = \"y4m:\"\n", "capture.source");
    assert_names_key("[display]\noutput = \"frames\"\n", "display.output");
    assert_names_key("[input]\nsource = \"script:\"\n", "input.source");
}

#[test]
fn a_bad_address_is_refused_by_key() {
    assert_names_key(
        "[network]\nreceiver_address = \"not-an-ip\"\n",
        "network.receiver_address",
    );
}

#[test]
fn a_frame_size_that_is_not_a_multiple_of_16_is_refused_by_key() {
    assert_names_key("[video]\nwidth = 650\n", "video.width");
    assert_names_key("[video]\nheight = 0\n", "video.height");
}

#[test]
fn cross_field_conflicts_are_refused_by_key() {
    assert_names_key(
        "[transport]\nfec_payload_type = 96\n",
        "transport.fec_payload_type",
    );
    assert_names_key(
        "[network]\nsender_address = \"10.0.0.1\"\nreceiver_address = \"10.0.0.1\"\nsender_port = 5004\n",
        "network.video_port",
    );
    assert_names_key(
        "[loss]\nrefresh_hz = 50\nfailsafe_ms = 30\n",
        "loss.failsafe_ms",
    );
}

#[test]
fn range_checks_cover_every_bounded_key() {
    let table = [
        ("[shm]\nprefix = \"a/b\"\n", "shm.prefix"),
        ("[video]\nfps = 0\n", "video.fps"),
        (
            "[codec]\nmax_payload_bytes = 9000\n",
            "codec.max_payload_bytes",
        ),
        ("[codec]\nthreads = 1000\n", "codec.threads"),
        ("[network]\nvideo_port = 0\n", "network.video_port"),
        ("[transport]\npayload_type = 8\n", "transport.payload_type"),
        (
            "[transport]\nfec_overhead_percent = 101\n",
            "transport.fec_overhead_percent",
        ),
        (
            "[transport]\npacing_fraction = 0.0\n",
            "transport.pacing_fraction",
        ),
        (
            "[transport]\nfeedback_interval_ms = 1\n",
            "transport.feedback_interval_ms",
        ),
        ("[loss]\ninterface = \"\"\n", "loss.interface"),
        ("[loss]\nexponent = -1.0\n", "loss.exponent"),
        (
            "[loss]\nzero_loss_at_mash = 0.0\n",
            "loss.zero_loss_at_mash",
        ),
        ("[loss]\nrefresh_hz = 10\n", "loss.refresh_hz"),
        (
            "[loss]\nmodel = \"gilbert-elliott\"\nge_r = 0.0\n",
            "loss.ge_r",
        ),
        ("[loss]\nmodel = \"bursty\"\n", "loss.model"),
        ("[loss]\nge_p = 1.5\n", "loss.ge_p"),
        ("[mash]\nwindow_ms = 10\n", "mash.window_ms"),
        ("[mash]\nsaturation_score = 0.0\n", "mash.saturation_score"),
        ("[mash]\nrepeat_penalty = 2.0\n", "mash.repeat_penalty"),
        ("[quality]\nat_rest = 50\nat_full = 40\n", "quality.at_full"),
        ("[quality]\nexponent = 0.0\n", "quality.exponent"),
        ("[delay]\nseconds = -1.0\n", "delay.seconds"),
        ("[delay]\nmax_memory_mib = 0\n", "delay.max_memory_mib"),
        (
            "[display]\nplayout_max_ms = 10000\n",
            "display.playout_max_ms",
        ),
        (
            "[display]\nplayout_min_ms = 50\nplayout_max_ms = 40\n",
            "display.playout_min_ms",
        ),
        (
            "[transport]\npacing_rate_mbit = 100001\n",
            "transport.pacing_rate_mbit",
        ),
        // A configuration from before the adaptive playout: refused, naming what replaces it.
        (
            "[display]\nplayout_delay_ms = 100\n",
            "display.playout_delay_ms",
        ),
        (
            "[display]\nglow_border_px = 1000\n",
            "display.glow_border_px",
        ),
        ("[display]\nsignal_lost_ms = 50\n", "display.signal_lost_ms"),
        (
            "[display]\nsignal_lost_ms = 60001\n",
            "display.signal_lost_ms",
        ),
        ("[input]\npublish_hz = 10\n", "input.publish_hz"),
    ];
    for (text, key) in table {
        assert_names_key(text, key);
    }
}

/// Values a service refused at start (or panicked on) although every key was in range: the
/// same rule now holds in the configuration.
#[test]
fn what_a_service_would_choke_on_is_refused_by_key() {
    let table = [
        // keymash-shm's segment prefix may not start with '-'.
        ("[shm]\nprefix = \"-x\"\n", "shm.prefix"),
        // The transport sends at most 1188 bytes of payload in a packet.
        (
            "[codec]\nmax_payload_bytes = 1189\n",
            "codec.max_payload_bytes",
        ),
        (
            "[codec]\nmax_payload_bytes = 1460\n",
            "codec.max_payload_bytes",
        ),
        // Interface names as the kernel takes them (loss-controller's rule).
        ("[loss]\ninterface = \"eth\\u0000\"\n", "loss.interface"),
        ("[loss]\ninterface = \"a\\tb\"\n", "loss.interface"),
        ("[loss]\ninterface = \"a:b\"\n", "loss.interface"),
        ("[loss]\ninterface = \"..\"\n", "loss.interface"),
        (
            "[loss]\ninterface = \"sixteen-chars-xx\"\n",
            "loss.interface",
        ),
        // NaN, the infinities and subnormal numbers in every plain float key.
        (
            "[transport]\npacing_fraction = 5e-324\n",
            "transport.pacing_fraction",
        ),
        (
            "[transport]\npacing_fraction = nan\n",
            "transport.pacing_fraction",
        ),
        ("[loss]\nexponent = inf\n", "loss.exponent"),
        ("[loss]\nexponent = 1e-310\n", "loss.exponent"),
        ("[quality]\nexponent = -nan\n", "quality.exponent"),
        ("[quality]\nexponent = 4e-320\n", "quality.exponent"),
        ("[mash]\nsaturation_score = inf\n", "mash.saturation_score"),
        ("[mash]\nrepeat_penalty = 5e-324\n", "mash.repeat_penalty"),
        ("[delay]\nseconds = nan\n", "delay.seconds"),
        ("[delay]\nseconds = 5e-324\n", "delay.seconds"),
        // The loss filter holds a probability in 1/2^32 steps: 1e-12 is 0 there.
        (
            "[loss]\nmodel = \"gilbert-elliott\"\nge_r = 1e-12\n",
            "loss.ge_r",
        ),
        // No path holds a NUL byte (capture's V4L2 crate panicked on one).
        (
            "[capture]\ndevice = \"/dev/video\\u0000\"\n",
            "capture.device",
        ),
        ("[capture]\nsource = \"y4m:/a\\u0000b\"\n", "capture.source"),
        (
            "[display]\noutput = \"frames:/a\\u0000b\"\n",
            "display.output",
        ),
        ("[input]\nsource = \"fifo:/a\\u0000b\"\n", "input.source"),
        (
            "[security]\nkey_file = \"/a\\u0000b\"\n",
            "security.key_file",
        ),
    ];
    for (text, key) in table {
        assert_names_key(text, key);
    }
    // What each refusal stops short of is still accepted.
    for text in [
        "[codec]\nmax_payload_bytes = 1188\n",
        "[loss]\ninterface = \"enp0s25\"\n",
        "[loss]\ninterface = \"veth-ab_1.2\"\n",
        "[transport]\npacing_fraction = 1e-300\n",
        "[delay]\nseconds = 0.0\n",
        "[mash]\nrepeat_penalty = 0.0\n",
        "[loss]\nmodel = \"gilbert-elliott\"\nge_r = 1e-9\n",
        "[shm]\nprefix = \"a-\"\n",
    ] {
        Config::from_toml_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
}

#[test]
fn interface_names_follow_the_kernels_rule() {
    use keymash_core::config::check_interface_name;
    for good in [
        "eth0",
        "lo",
        "enp0s31f6",
        "wlan0.100",
        "br-1_2",
        "123456789012345",
    ] {
        assert_eq!(check_interface_name(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "a:b",
        "a b",
        "a\tb",
        "a\0",
        "1234567890123456",
        "ä",
    ] {
        let reason = check_interface_name(bad).unwrap_err();
        assert!(reason.contains(&format!("{bad:?}")), "{bad:?}: {reason}");
    }
}

#[test]
fn a_syntax_error_is_refused_with_its_line() {
    let e = refused("[video]\nwidth = 640\nheight = = 480\n");
    assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
    assert!(e.to_string().contains("line 3"), "{e}");
}

#[test]
fn a_missing_file_is_refused_with_its_path() {
    let e = Config::load(std::path::Path::new("/nonexistent/keymash.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/keymash.toml"), "{e}");
}

#[test]
fn the_link_is_protected_by_default_and_none_must_be_explicit() {
    let config = Config::default();
    assert_eq!(
        config.security.mode,
        keymash_core::config::SecurityMode::Psk
    );
    assert_eq!(
        config.security.key_file,
        std::path::PathBuf::from("/etc/keymash/keymash.key")
    );
    let none = Config::from_toml_str("[security]\nmode = \"none\"\n").unwrap();
    assert_eq!(none.load_key().unwrap(), None);
    assert_names_key("[security]\nmode = \"off\"\n", "security.mode");
    assert_names_key("[security]\nkey_file = \"\"\n", "security.key_file");
}

#[test]
fn a_missing_or_damaged_key_file_is_refused_naming_security_key_file() {
    let dir = std::env::temp_dir().join(format!("keymash-keyfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keymash.key");
    let config =
        Config::from_toml_str(&format!("[security]\nkey_file = \"{}\"\n", path.display())).unwrap();
    let missing = config.load_key().unwrap_err();
    assert_eq!(missing.key(), Some("security.key_file"));
    assert!(missing.to_string().contains("keymash keygen"), "{missing}");
    std::fs::write(&path, "0123\n").unwrap();
    assert_eq!(
        config.load_key().unwrap_err().key(),
        Some("security.key_file")
    );
    let key = keymash_core::key::PreSharedKey::from_bytes([9; 32]);
    std::fs::write(&path, key.to_file_text()).unwrap();
    assert_eq!(config.load_key().unwrap(), Some(key));
    std::fs::remove_dir_all(&dir).unwrap();
}
