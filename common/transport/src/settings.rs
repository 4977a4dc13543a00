//! The transport's settings from the configuration file: `[transport]`, `video.fps` (frame
//! interval and pacing spread) and `codec.quality` (the fallback when feedback falls silent).
//! Both ends derive them the same way, so they agree on payload types and FEC. `[security]`
//! adds the protection: the pre-shared key is read from `security.key_file` here (the one file
//! this reads), so no service can build a transport and forget its key.
//!
//! Every refusal is a [`ConfigError::Invalid`] naming the configuration key to change, so a
//! service that meets one exits as for any refused configuration (78, no restart loop), and
//! [`check_settings`] lets `keymash check-config` refuse exactly the same without the key file.

use std::time::Duration;

use crate::rtp::MAX_PAYLOAD_LEN;
use crate::{FecOverhead, PayloadType, Protection, TransportConfig};
use keymash_core::config::{Config, ConfigError, MAX_PAYLOAD_BYTES};

// The configuration's limit on `codec.max_payload_bytes` is the transport's packet limit: one
// number, owned here, so a payload the configuration accepts is one the sender sends.
const _: () = assert!(MAX_PAYLOAD_LEN == MAX_PAYLOAD_BYTES as usize);

fn invalid(key: &'static str, message: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        location: "config".to_owned(),
        key,
        message: message.to_string(),
    }
}

/// The transport settings for `config` without its key file ([`Protection::Unprotected`]),
/// checked as the sender and receiver check them: everything the configuration alone decides.
/// `keymash check-config --no-key` and every service's start run this.
pub fn check_settings(config: &Config) -> Result<TransportConfig, ConfigError> {
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
    if config.codec.max_payload_bytes as usize > MAX_PAYLOAD_LEN {
        return Err(invalid(
            "codec.max_payload_bytes",
            format!(
                "must be at most {MAX_PAYLOAD_LEN}, the most the transport sends in one packet, got {}",
                config.codec.max_payload_bytes
            ),
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
        // Megabits to bytes a second.
        pacing_rate_bytes_per_sec: (t.pacing_rate_mbit > 0)
            .then(|| u64::from(t.pacing_rate_mbit) * 1_000_000 / 8),
        feedback_interval: ms(t.feedback_interval_ms),
        quality_fallback_timeout: ms(t.quality_fallback_ms),
        fallback_quality: config.codec.quality,
        keepalive_interval: ms(t.keepalive_interval_ms),
        peer_timeout: ms(t.peer_timeout_ms),
        max_queue_delay: frame_interval * 3,
        security: Protection::Unprotected,
        ..TransportConfig::default()
    };
    settings
        .validate()
        .map_err(|e| refused_settings(&e, t.pacing_fraction, fps))?;
    Ok(settings)
}

/// Builds and validates the transport settings for `config`, with its key
/// ([`check_settings`] plus `security.key_file`).
pub fn transport_settings(config: &Config) -> Result<TransportConfig, ConfigError> {
    let mut settings = check_settings(config)?;
    settings.security = match config.load_key()? {
        Some(key) => Protection::PreShared(key),
        None => Protection::Unprotected,
    };
    Ok(settings)
}

/// A refusal of [`TransportConfig::validate`], named by the key that caused it.
fn refused_settings(e: &crate::ConfigError, pacing_fraction: f64, fps: u32) -> ConfigError {
    use crate::ConfigError as Refused;
    match e {
        // The spread is the frame interval times the fraction, in whole nanoseconds: a tiny
        // fraction (5e-324 passed the range check) rounds to no time at all.
        Refused::ZeroDuration("frame_spread") => invalid(
            "transport.pacing_fraction",
            format!(
                "{pacing_fraction:e} of the frame interval at video.fps = {fps} spreads a frame's packets over \
                 no time at all (under 1 ns); use at least 0.001"
            ),
        ),
        Refused::SpreadLongerThanFrame { .. } => invalid("transport.pacing_fraction", e),
        Refused::SamePayloadTypes(_) => invalid("transport.fec_payload_type", e),
        Refused::ZeroDuration("feedback_interval") => {
            invalid("transport.feedback_interval_ms", e)
        }
        Refused::ZeroDuration("quality_fallback_timeout") => {
            invalid("transport.quality_fallback_ms", e)
        }
        Refused::ZeroDuration("keepalive_interval") => {
            invalid("transport.keepalive_interval_ms", e)
        }
        Refused::ZeroDuration("peer_timeout") => invalid("transport.peer_timeout_ms", e),
        _ => invalid("transport", e),
    }
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
        assert_eq!(err.key(), Some("security.key_file"), "{err:?}");
        // Everything but the key is fine.
        assert!(check_settings(&config).is_ok());
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
        // 200 Mbit/s: a 60 KB frame leaves in 2.4 ms, well inside the spread.
        assert_eq!(settings.pacing_rate_bytes_per_sec, Some(25_000_000));
        assert_eq!(settings.spread_for(60_000), Duration::from_micros(2_400));
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
        config.transport.pacing_rate_mbit = 0;
        let settings = transport_settings(&config).unwrap();
        assert_eq!(settings.pacing_rate_bytes_per_sec, None, "0: spread only");
    }

    #[test]
    fn unusable_values_are_refused_naming_the_key() {
        type Spoil = fn(&mut Config);
        let cases: [(&str, Spoil); 9] = [
            ("transport.fec_overhead_percent", |c| {
                c.transport.fec_overhead_percent = 150
            }),
            ("transport.payload_type", |c| c.transport.payload_type = 200),
            ("transport.pacing_fraction", |c| {
                c.transport.pacing_fraction = 0.0
            }),
            // In range, but a frame interval times it is less than a nanosecond.
            ("transport.pacing_fraction", |c| {
                c.transport.pacing_fraction = 5e-324
            }),
            ("transport.pacing_fraction", |c| {
                c.video.fps = 120;
                c.transport.pacing_fraction = 5e-11
            }),
            ("transport.fec_payload_type", |c| {
                c.transport.fec_payload_type = c.transport.payload_type
            }),
            ("transport.feedback_interval_ms", |c| {
                c.transport.feedback_interval_ms = 0
            }),
            ("codec.max_payload_bytes", |c| {
                c.codec.max_payload_bytes = MAX_PAYLOAD_LEN as u32 + 1
            }),
            ("video.fps", |c| c.video.fps = 0),
        ];
        for (key, spoil) in cases {
            let mut config = unprotected();
            spoil(&mut config);
            let err = transport_settings(&config).unwrap_err();
            assert_eq!(err.key(), Some(key), "{err}");
            assert_eq!(
                check_settings(&config).unwrap_err().to_string(),
                err.to_string(),
                "the check without the key refuses the same"
            );
        }
        // The smallest fraction the message suggests works at every frame rate.
        for fps in [1, 30, 120] {
            let mut config = unprotected();
            config.video.fps = fps;
            config.transport.pacing_fraction = 0.001;
            assert!(check_settings(&config).is_ok(), "{fps} fps");
        }
        let mut config = unprotected();
        config.codec.max_payload_bytes = MAX_PAYLOAD_LEN as u32;
        assert!(check_settings(&config).is_ok());
    }
}
