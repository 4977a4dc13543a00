//! The one check of a configuration: everything any of the eight services would refuse at start
//! from the configuration alone, so `keymash check-config` (and `install.sh`, which runs it)
//! refuses exactly what a service would, with the same words, and every service refuses it
//! before it touches shared memory, a socket or a device, with exit 78.
//!
//! Each check belongs to the crate that owns the rule; this module only runs them all and names
//! the key behind the codec's and the presentation's refusals:
//!
//! - [`Config::validate`] (keymash-core): every key on its own and the pure conflicts between
//!   keys, the loss-controller's interface name and its loss curve included.
//! - the frame size the codec codes (`keymash_codec::FrameGeometry`): capture, delay-buffer,
//!   encoder and display all refused a size it cannot code.
//! - [`keymash_pipeline::check_config`]: every segment's name and shape, and the delay hold's
//!   memory budget (delay-buffer).
//! - [`keymash_transport::check_settings`]: the transport's settings as net-tx and net-rx build
//!   them (the key file is read apart: `check-config --no-key` skips it).
//! - the headless display's canvas (`keymash_present::headless_canvas`): the picture with its
//!   glow border must still be a frame the codec's tools can write.
//! - a scripted mash source's pattern (`keymash_input::MashScript`).
//! - the encoder's payload limits, asserted at compile time to contain the configuration's.
//!
//! What only running can find (a camera or keyboard missing, an interface that does not exist,
//! a file or directory that cannot be opened, free space in /dev/shm) is not checked here: the
//! service reports it as it happens.

use std::path::Path;

use keymash_codec::FrameGeometry;
use keymash_core::config::{
    Config, ConfigError, DisplayOutput, InputSource, MAX_PAYLOAD_BYTES, MIN_PAYLOAD_BYTES,
};
use keymash_input::MashScript;

/// Reads `path` and runs [`check`] on it; refusals name the file as [`Config::load`] does.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::load(path)?;
    check(&config).map_err(|e| e.in_file(path))?;
    Ok(config)
}

/// Everything a service would refuse in `config` at start, first refusal first.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    // Config::load has run it already; a Config built in code (tests, the demo) may not have.
    config.validate()?;
    let geometry = frame_geometry(config)?;
    keymash_pipeline::check_config(config)?;
    keymash_transport::check_settings(config)?;
    display_canvas(config, geometry)?;
    input_source(config)?;
    Ok(())
}

// The encoder refuses a payload limit outside its own bounds (exit 1 at start); the
// configuration's range lies inside them, so that refusal is never met.
const _: () = assert!(
    keymash_codec::encoder::MIN_MAX_PAYLOAD <= MIN_PAYLOAD_BYTES as usize
        && MAX_PAYLOAD_BYTES as usize <= keymash_codec::encoder::MAX_MAX_PAYLOAD
);

fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid {
        location: "config".to_owned(),
        key,
        message,
    }
}

/// The frame the codec codes at `video.width` x `video.height`: Config::validate keeps each
/// side in range, but the codec also counts macroblocks (4096x4096 is one too many).
fn frame_geometry(config: &Config) -> Result<FrameGeometry, ConfigError> {
    let video = &config.video;
    FrameGeometry::new(video.width as usize, video.height as usize).map_err(|e| {
        invalid(
            "video.width",
            format!(
                "with `video.height` = {}: {e}; lower the resolution",
                video.height
            ),
        )
    })
}

/// The headless outputs (`frames:`, `y4m:`) write the picture inside its glow border as one
/// frame, which must still be a size the codec's tools take.
fn display_canvas(config: &Config, picture: FrameGeometry) -> Result<(), ConfigError> {
    match config.display.output {
        DisplayOutput::Frames(_) | DisplayOutput::Y4m(_) => {
            let border = config.display.glow_border_px;
            keymash_present::headless_canvas(picture, border)
                .map(drop)
                .map_err(|e| {
                    invalid(
                        "display.glow_border_px",
                        format!(
                            "{border} px around the {picture} picture makes a canvas the headless output \
                             cannot write: {e}; narrow the border or lower the resolution"
                        ),
                    )
                })
        }
        DisplayOutput::Window => Ok(()),
    }
}

/// A `script:` source is parsed by mash-input at start; a FIFO or the keyboards are opened then.
fn input_source(config: &Config) -> Result<(), ConfigError> {
    match &config.input.source {
        InputSource::Script(pattern) => pattern
            .parse::<MashScript>()
            .map(drop)
            .map_err(|e| invalid("input.source", format!("mash pattern {pattern:?}: {e}"))),
        InputSource::Evdev | InputSource::Fifo(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration Config::validate accepts: what is refused is refused by the derived checks.
    fn config(toml: &str) -> Config {
        Config::from_toml_str(toml).unwrap_or_else(|e| panic!("{toml}: {e}"))
    }

    #[test]
    fn the_default_configuration_passes() {
        check(&Config::default()).unwrap();
    }

    /// Each refusal a service made at start (exit 1, or a panic) that validation passed, now
    /// refused here, naming the key.
    #[test]
    fn what_a_service_refused_is_refused_here_naming_the_key() {
        let table = [
            // capture, delay-buffer, encoder and display: more than 65535 macroblocks.
            (
                "[video]\nwidth = 4096\nheight = 4096\n[delay]\nseconds = 1.0\n",
                "video.width",
            ),
            // delay-buffer: the hold would need more than delay.max_memory_mib.
            ("[delay]\nseconds = 600.0\n", "delay.seconds"),
            // net-tx and net-rx: the pacing spread rounds to nothing.
            (
                "[transport]\npacing_fraction = 1e-300\n",
                "transport.pacing_fraction",
            ),
            // display, headless: the canvas with its border is wider than 4096.
            (
                "[video]\nwidth = 4096\nheight = 1024\n[delay]\nseconds = 1.0\n\
                 [display]\noutput = \"frames:/tmp/x\"\n",
                "display.glow_border_px",
            ),
            // mash-input: faster than anyone presses keys, and a segment of no length.
            (
                "[input]\nsource = \"script:0-1s:999999/s\"\n",
                "input.source",
            ),
            (
                "[input]\nsource = \"script:0-5e-324s:200/s\"\n",
                "input.source",
            ),
        ];
        for (toml, key) in table {
            let config = config(toml);
            let err = check(&config).unwrap_err();
            assert_eq!(err.key(), Some(key), "{toml}: {err}");
        }
        // The window output has no canvas to fit.
        let window = config("[video]\nwidth = 4096\nheight = 1024\n[delay]\nseconds = 1.0\n");
        check(&window).unwrap();
    }

    #[test]
    fn a_refusal_from_a_file_names_the_file() {
        let path =
            std::env::temp_dir().join(format!("keymash-preflight-{}.toml", std::process::id()));
        std::fs::write(&path, "[delay]\nseconds = 600.0\n").unwrap();
        let err = load(&path).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(
            err.to_string().starts_with(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(err.key(), Some("delay.seconds"));
    }
}
