//! The transport's settings from the configuration file: `[transport]`, `video.fps` (frame
//! interval and pacing spread) and `codec.quality` (the fallback when feedback falls silent).
//! Both ends derive them the same way, so they agree on payload types and FEC. `[security]`
//! adds the protection: the pre-shared key is read from `security.key_file` here (the one file
//! this reads), so no service can build a transport and forget its key.

use std::time::Duration;

use crate::{FecOverhead, PayloadType, Protection, TransportConfig};
use keymash_core::config::{Config, ConfigError};

/// A `[transport]` value the transport cannot use, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum TransportSettingsError {
    #[error("`{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    /// The key file named by `security.key_file` is missing or damaged.
    #[error("security")]
    Key(#[source] ConfigError),
}

fn invalid(key: &'static str, message: impl ToString) -> TransportSettingsError {
    TransportSettingsError::Invalid {
        key,
        message: message.to_string(),
    }
}

/// Builds and validates the transport settings for `config`.
pub fn transport_settings(config: &Config) -> Result<TransportConfig, TransportSettingsError> {
    let t = &config.transport;
    let fps = config.video.fps;
    if fps == 0 {
        return Err(invalid("video.fps", "must be at least 1"));
    }
    if !(t.pacing_fraction > 0.0 && t.pacing_fraction <= 1.0) {
        return Err(invalid(
            "transport.pacing_fraction",
            format!("must be in (0, 1], got {}", t.pacing_fraction),
        ));
    }
    let frame_interval = Duration::from_nanos(1_000_000_000 / u64::from(fps));
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    let settings = TransportConfig {
        payload_type: PayloadType::new(t.payload_type)
            .map_err(|e| invalid("transport.payload_type", e))?,
        repair_payload_type: PayloadType::new(t.fec_payload_type)
            .map_err(|e| invalid("transport.fec_payload_type", e))?,
        fec: t.fec_overhead_percent > 0,
        fec_overhead: if t.fec_overhead_percent > 0 {
            FecOverhead::new(f64::from(t.fec_overhead_percent) / 100.0)
                .map_err(|e| invalid("transport.fec_overhead_percent", e))?
        } else {
            FecOverhead::DEFAULT
        },
        nack: t.nack,
        frame_interval,
        frame_spread: frame_interval.mul_f64(t.pacing_fraction),
        feedback_interval: ms(t.feedback_interval_ms),
        quality_fallback_timeout: ms(t.quality_fallback_ms),
        fallback_quality: config.codec.quality,
        keepalive_interval: ms(t.keepalive_interval_ms),
        peer_timeout: ms(t.peer_timeout_ms),
        max_queue_delay: frame_interval * 3,
        security: match config.load_key().map_err(TransportSettingsError::Key)? {
            Some(key) => Protection::PreShared(key),
            None => Protection::Unprotected,
        },
        ..TransportConfig::default()
    };
    settings.validate().map_err(|e| invalid("transport", e))?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymash_core::config::SecurityMode;
    use keymash_core::Quality;

    /// The default configuration without the key file (protection is tested on its own).
    fn unprotected() -> Config {
        let mut config = Config::default();
        config.security.mode = SecurityMode::None;
        config
    }

    #[test]
    fn the_default_configuration_needs_its_key_file_and_none_is_unprotected() {
        let mut config = Config::default();
        config.security.key_file = "/nonexistent/keymash.key".into();
        let err = transport_settings(&config).unwrap_err();
        assert!(
            matches!(&err, TransportSettingsError::Key(e) if e.key() == Some("security.key_file")),
            "{err:?}"
        );
        assert_eq!(
            transport_settings(&unprotected()).unwrap().security,
            Protection::Unprotected
        );
    }

    #[test]
    fn the_default_configuration_gives_the_exhibit_transport() {
        let settings = transport_settings(&unprotected()).unwrap();
        assert!(!settings.fec && !settings.nack, "raw loss by default");
        assert_eq!(settings.frame_interval, Duration::from_nanos(33_333_333));
        assert_eq!(
            settings.frame_spread,
            Duration::from_nanos(33_333_333).mul_f64(1.0 / 3.0)
        );
        assert_eq!(settings.quality_fallback_timeout, Duration::from_secs(2));
        assert_eq!(settings.fallback_quality, Quality::new(50).unwrap());
    }

    #[test]
    fn keys_map_onto_the_transport() {
        let mut config = unprotected();
        config.transport.fec_overhead_percent = 50;
        config.transport.nack = true;
        config.video.fps = 20;
        config.codec.quality = Quality::new(70).unwrap();
        let settings = transport_settings(&config).unwrap();
        assert!(settings.fec && settings.nack);
        assert_eq!(settings.fec_overhead.get(), 0.5);
        assert_eq!(settings.frame_interval, Duration::from_millis(50));
        assert_eq!(settings.fallback_quality.get(), 70);
    }

    #[test]
    fn unusable_values_are_refused_naming_the_key() {
        type Spoil = fn(&mut Config);
        let cases: [(&str, Spoil); 4] = [
            ("transport.fec_overhead_percent", |c| {
                c.transport.fec_overhead_percent = 150
            }),
            ("transport.payload_type", |c| c.transport.payload_type = 200),
            ("transport.pacing_fraction", |c| {
                c.transport.pacing_fraction = 0.0
            }),
            ("transport", |c| {
                c.transport.fec_payload_type = c.transport.payload_type
            }),
        ];
        for (key, spoil) in cases {
            let mut config = unprotected();
            spoil(&mut config);
            let err = transport_settings(&config).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("`{key}`")),
                "{key}: {err}"
            );
        }
    }
}
