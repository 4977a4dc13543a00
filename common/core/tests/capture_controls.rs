//! `[capture.controls]`: what the configuration alone can refuse (the camera decides the rest at
//! open, see `keymash_media::controls`), each refusal naming the control.

use keymash_core::config::{control_key, Config, ControlSetting};

fn refused(text: &str) -> keymash_core::config::ConfigError {
    match Config::from_toml_str(text) {
        Ok(c) => panic!("accepted {text:?} -> {:?}", c.capture.controls),
        Err(e) => e,
    }
}

#[test]
fn integers_booleans_and_menu_item_names_are_taken() {
    let config = Config::from_toml_str(
        "[capture.controls]\nexposure_time_absolute = 500\nauto_exposure = \"Manual Mode\"\n\
         white_balance_automatic = false\npower_line_frequency = 1\nbrightness = -10\n",
    )
    .unwrap();
    let controls: Vec<(&str, &ControlSetting)> = config
        .capture
        .controls
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    assert_eq!(
        controls,
        [
            (
                "auto_exposure",
                &ControlSetting::MenuItem("Manual Mode".into())
            ),
            ("brightness", &ControlSetting::Integer(-10)),
            ("exposure_time_absolute", &ControlSetting::Integer(500)),
            ("power_line_frequency", &ControlSetting::Integer(1)),
            ("white_balance_automatic", &ControlSetting::Boolean(false)),
        ]
    );
    // The inline form is the same table.
    let inline = Config::from_toml_str(
        "[capture]\ncontrols = { exposure_time_absolute = 500, auto_exposure = \"Manual Mode\", \
         white_balance_automatic = false, power_line_frequency = 1, brightness = -10 }\n",
    )
    .unwrap();
    assert_eq!(inline, config);
}

#[test]
fn a_value_of_another_toml_type_is_refused_naming_the_control() {
    for value in ["1.5", "[1, 2]", "{ a = 1 }", "1979-05-27"] {
        let e = refused(&format!("[capture.controls]\nbrightness = {value}\n"));
        assert_eq!(e.key(), Some("capture.controls.brightness"), "{value}: {e}");
        let text = e.to_string();
        assert!(
            text.contains("capture.controls.brightness") && text.contains("menu item"),
            "{value}: {text}"
        );
    }
}

#[test]
fn an_empty_or_misspelt_name_is_refused_naming_it() {
    let e = refused("[capture.controls]\n\"\" = 1\n");
    assert_eq!(e.key(), Some("capture.controls"));
    assert!(e.to_string().contains("\"\" is no control name"), "{e}");
    let e = refused("[capture.controls]\n\"Exposure Time, Absolute\" = 250\n");
    assert_eq!(e.key(), Some("capture.controls"));
    assert!(
        e.to_string()
            .contains("control \"Exposure Time, Absolute\": write its name as")
            && e.to_string().contains("`exposure_time_absolute`"),
        "{e}"
    );
}

#[test]
fn control_names_are_the_kernel_names_as_v4l2_ctl_prints_them() {
    for (kernel, key) in [
        ("Exposure Time, Absolute", "exposure_time_absolute"),
        ("White Balance, Automatic", "white_balance_automatic"),
        ("Auto Exposure", "auto_exposure"),
        ("Power Line Frequency", "power_line_frequency"),
        (
            "White Balance Temperature, Auto",
            "white_balance_temperature_auto",
        ),
        ("  Gain (dB)  ", "gain_db"),
        ("LED1 Mode", "led1_mode"),
        (", ,", ""),
    ] {
        assert_eq!(control_key(kernel), key, "{kernel:?}");
    }
}

#[test]
fn printed_configuration_keeps_the_controls() {
    let config = Config::from_toml_str(
        "[capture.controls]\nauto_exposure = \"Manual Mode\"\nbrightness = 3\n",
    )
    .unwrap();
    let printed = toml::to_string(&config).unwrap();
    assert_eq!(Config::from_toml_str(&printed).unwrap(), config);
    assert!(!toml::to_string(&Config::default())
        .unwrap()
        .contains("controls"));
}
