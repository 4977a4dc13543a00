//! Every segment of the pipeline built from a configuration without touching shared memory:
//! the refusals a service would meet when it names, shapes or sizes its segments (the prefix,
//! each ring's geometry, the delay hold's memory budget), as [`ConfigError`]s naming the key to
//! change. `keymash check-config` and every service's start run this through
//! `keymash_service::preflight`, so a configuration the delay buffer would refuse is refused
//! before anything is installed or created.

use keymash_core::config::{Config, ConfigError};

use crate::segments::{PipelineError, Segments};
use crate::topology::{Service, DELAYED_FRAMES, DELAY_HOLD, PAYLOADS, RAW_FRAMES};

/// Names and shapes every segment of both PCs under `config` (nothing is created or opened).
pub fn check_config(config: &Config) -> Result<(), ConfigError> {
    let segments = Segments::new(config).map_err(refused)?;
    segments.raw_frames().map_err(refused)?;
    segments.delay_hold().map_err(refused)?;
    segments.delayed_frames().map_err(refused)?;
    segments.payloads().map_err(refused)?;
    segments.received().map_err(refused)?;
    segments.mash_cell().map_err(refused)?;
    segments.quality_cell().map_err(refused)?;
    for service in Service::ALL {
        segments.stats_cell(service).map_err(refused)?;
    }
    Ok(())
}

/// The configuration key behind a segment that could not be named or shaped.
fn refused(e: PipelineError) -> ConfigError {
    let (key, message) = match e {
        PipelineError::Delay(delay) => return delay.into(),
        PipelineError::Name(name) => ("shm.prefix", name.to_string()),
        PipelineError::Geometry { segment, source } => {
            let key = match segment {
                RAW_FRAMES | DELAYED_FRAMES | PAYLOADS => "video.width",
                DELAY_HOLD => "delay.seconds",
                _ => "codec.max_payload_bytes",
            };
            (key, format!("the {segment} ring cannot be built: {source}"))
        }
        // Creating and opening are not done here; anything else a later version adds is
        // still a refusal, with its own words.
        other => ("shm.prefix", other.to_string()),
    };
    ConfigError::Invalid {
        location: "config".to_owned(),
        key,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_builds_every_segment() {
        check_config(&Config::default()).unwrap();
    }

    #[test]
    fn a_delay_over_its_memory_limit_is_refused_naming_both_keys() {
        let mut config = Config::default();
        config.delay.seconds = 600.0;
        let err = check_config(&config).unwrap_err();
        assert_eq!(err.key(), Some("delay.seconds"));
        let text = err.to_string();
        assert!(text.contains("delay.max_memory_mib"), "{text}");
        // The same words the delay buffer logs when it meets the budget itself.
        let budget = Segments::new(&config).unwrap().delay_hold().unwrap_err();
        let PipelineError::Delay(delay) = budget else {
            panic!("expected a delay refusal, got {budget}");
        };
        assert!(text.ends_with(&delay.message()), "{text}");
    }

    #[test]
    fn a_prefix_the_shared_memory_layer_refuses_is_refused_by_key() {
        let mut config = Config::default();
        // Config::validate refuses it too; this is the shared-memory layer's own word.
        config.shm.prefix = "-x".to_owned();
        let err = check_config(&config).unwrap_err();
        assert_eq!(err.key(), Some("shm.prefix"), "{err}");
    }
}
