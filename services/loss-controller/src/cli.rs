//! Command-line arguments and their validation into a [`Settings`] the runner uses.

use std::time::Duration;

use keymash_core::config::{check_interface_name, Config, LossModelKind};
use keymash_core::curves::{LossCurve, LossCurveError};
use keymash_core::DropProbability;
use keymash_service::ServiceArgs;

use crate::loss_model::{GilbertElliott, LossModel};
use crate::plan::{Drive, Plan};

/// `keymash-loss-controller`: runs the eBPF loss filter at the receiver's ingress.
///
/// Without `--fixed-drop` or `--model gilbert-elliott`, the drop probability follows the mash
/// level through the mash curve of the config file's `[loss]` section.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "keymash-loss-controller", version, about)]
pub struct Args {
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Network interface whose ingress gets the filter (overrides loss.interface).
    #[arg(long, value_name = "IFACE")]
    pub interface: Option<String>,

    /// UDP destination port of the video flow (overrides network.video_port).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Hold this drop probability (0..1, Bernoulli) until stopped, ignoring mashing.
    #[arg(long, value_name = "P", value_parser = parse_probability, allow_negative_numbers = true, conflicts_with = "model")]
    pub fixed_drop: Option<DropProbability>,

    /// Loss model. gilbert-elliott holds burst loss with the --ge-* parameters until stopped.
    #[arg(long, value_enum, default_value_t = ModelArg::Bernoulli)]
    pub model: ModelArg,

    /// Gilbert-Elliott: probability per packet of moving good -> bad (netem gemodel p).
    #[arg(long, value_name = "P", value_parser = parse_probability, allow_negative_numbers = true)]
    pub ge_p: Option<DropProbability>,

    /// Gilbert-Elliott: probability per packet of moving bad -> good (netem gemodel r).
    #[arg(long, value_name = "R", value_parser = parse_probability, allow_negative_numbers = true)]
    pub ge_r: Option<DropProbability>,

    /// Gilbert-Elliott: drop probability in the bad state, netem gemodel's third parameter 1-h.
    #[arg(long = "ge-1-h", visible_alias = "ge-h", value_name = "1-H", value_parser = parse_probability, allow_negative_numbers = true)]
    pub ge_loss_bad: Option<DropProbability>,

    /// Gilbert-Elliott: drop probability in the good state, netem gemodel's fourth parameter 1-k.
    #[arg(long = "ge-1-k", visible_alias = "ge-k", value_name = "1-K", value_parser = parse_probability, allow_negative_numbers = true)]
    pub ge_loss_good: Option<DropProbability>,
}

/// The loss model named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelArg {
    Bernoulli,
    GilbertElliott,
}

fn parse_probability(text: &str) -> Result<DropProbability, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    DropProbability::new(value).map_err(|e| e.to_string())
}

/// Arguments and config that cannot work together.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("--ge-p and --ge-r are required with --model gilbert-elliott")]
    GilbertElliottIncomplete,
    #[error("--ge-* parameters only apply with --model gilbert-elliott")]
    GilbertElliottParametersWithoutModel,
    #[error("--ge-r must be > 0 (with r = 0 the first burst never ends)")]
    GilbertElliottNeverRecovers,
    #[error("the video port must be 1..=65535, got 0")]
    PortZero,
    /// The rule is the configuration's (`loss.interface`), so `--interface` and the file agree.
    #[error("interface name: {0}")]
    BadInterface(String),
    #[error("loss curve from the config: {0}")]
    Curve(#[from] LossCurveError),
}

/// Everything the runner needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub interface: String,
    pub plan: Plan,
    /// Time between two map refreshes (from loss.refresh_hz).
    pub refresh_interval: Duration,
}

impl Args {
    /// Combines the arguments with the config file's values into validated settings.
    pub fn settings(&self, config: &Config) -> Result<Settings, SettingsError> {
        let interface = self
            .interface
            .clone()
            .unwrap_or_else(|| config.loss.interface.clone());
        check_interface_name(&interface).map_err(SettingsError::BadInterface)?;
        let port = self.port.unwrap_or(config.network.video_port);
        if port == 0 {
            return Err(SettingsError::PortZero);
        }
        let drive = self.drive(config)?;
        let plan = Plan {
            drive,
            port,
            failsafe: Duration::from_millis(u64::from(config.loss.failsafe_ms)),
        };
        let refresh_hz = config.loss.refresh_hz.max(1);
        let refresh_interval = Duration::from_secs(1) / refresh_hz;
        Ok(Settings {
            interface,
            plan,
            refresh_interval,
        })
    }

    fn drive(&self, config: &Config) -> Result<Drive, SettingsError> {
        let any_ge = self.ge_p.is_some()
            || self.ge_r.is_some()
            || self.ge_loss_bad.is_some()
            || self.ge_loss_good.is_some();
        match self.model {
            ModelArg::GilbertElliott => {
                let (Some(p), Some(r)) = (self.ge_p, self.ge_r) else {
                    return Err(SettingsError::GilbertElliottIncomplete);
                };
                if r.get() == 0.0 {
                    return Err(SettingsError::GilbertElliottNeverRecovers);
                }
                Ok(Drive::Fixed(LossModel::GilbertElliott(GilbertElliott {
                    p,
                    r,
                    loss_bad: self.ge_loss_bad.unwrap_or(DropProbability::ALL),
                    loss_good: self.ge_loss_good.unwrap_or(DropProbability::NONE),
                })))
            }
            ModelArg::Bernoulli if any_ge => {
                Err(SettingsError::GilbertElliottParametersWithoutModel)
            }
            ModelArg::Bernoulli => match self.fixed_drop {
                Some(drop) => Ok(Drive::Fixed(LossModel::Bernoulli(drop))),
                None => {
                    let curve = LossCurve::new(
                        config.loss.drop_at_rest,
                        config.loss.exponent,
                        config.loss.zero_loss_at_mash,
                    )?;
                    let burst = match config.loss.model {
                        LossModelKind::Bernoulli => None,
                        LossModelKind::GilbertElliott => Some(GilbertElliott {
                            p: config.loss.ge_p,
                            r: config.loss.ge_r,
                            loss_bad: config.loss.ge_loss_bad,
                            loss_good: config.loss.ge_loss_good,
                        }),
                    };
                    Ok(Drive::Mash { curve, burst })
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, String> {
        let mut argv = vec!["keymash-loss-controller"];
        argv.extend_from_slice(args);
        let parsed = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        parsed
            .settings(&Config::default())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn valid_command_lines_become_the_intended_plan() {
        let p = |v| DropProbability::new(v).unwrap();
        let cases: [(&[&str], Drive); 3] = [
            (
                &[
                    "--interface",
                    "veth1",
                    "--port",
                    "6000",
                    "--fixed-drop",
                    "0.1",
                ],
                Drive::Fixed(LossModel::Bernoulli(p(0.1))),
            ),
            (
                &[
                    "--interface",
                    "veth1",
                    "--model",
                    "gilbert-elliott",
                    "--ge-p",
                    "0.05",
                    "--ge-r",
                    "0.25",
                ],
                Drive::Fixed(LossModel::GilbertElliott(GilbertElliott {
                    p: p(0.05),
                    r: p(0.25),
                    loss_bad: DropProbability::ALL,
                    loss_good: DropProbability::NONE,
                })),
            ),
            (
                &["--interface", "veth1"],
                Drive::Mash {
                    curve: LossCurve::default(),
                    burst: None,
                },
            ),
        ];
        for (args, drive) in cases {
            let s = settings(args).unwrap();
            assert_eq!(s.plan.drive, drive, "{args:?}");
            assert_eq!(s.interface, "veth1");
        }
        let s = settings(&["--interface", "x", "--port", "6000", "--fixed-drop", "1"]).unwrap();
        assert_eq!(s.plan.port, 6000);
        assert_eq!(
            s.plan.failsafe,
            Duration::from_millis(u64::from(Config::default().loss.failsafe_ms))
        );
        assert!(
            s.refresh_interval <= Duration::from_millis(20),
            "at least 50 Hz"
        );
    }

    #[test]
    fn the_config_files_burst_model_drives_mashing_mode() {
        let mut config = Config::default();
        config.loss.model = LossModelKind::GilbertElliott;
        config.loss.ge_r = DropProbability::new(0.5).unwrap();
        let args = Args::try_parse_from(["keymash-loss-controller"]).unwrap();
        let Drive::Mash {
            burst: Some(chain), ..
        } = args.settings(&config).unwrap().plan.drive
        else {
            panic!("expected a mash drive with a burst chain");
        };
        assert_eq!(chain.r.get(), 0.5);
        assert_eq!(chain.p, config.loss.ge_p);
        assert_eq!(chain.loss_bad, config.loss.ge_loss_bad);
        config.loss.model = LossModelKind::Bernoulli;
        assert!(matches!(
            args.settings(&config).unwrap().plan.drive,
            Drive::Mash { burst: None, .. }
        ));
    }

    #[test]
    fn invalid_command_lines_are_refused_with_a_reason() {
        let cases: [(&[&str], &str); 11] = [
            (&["--fixed-drop", "1.5"], "drop probability must be in"),
            (&["--fixed-drop", "abc"], "is not a number"),
            (&["--fixed-drop", "-0.1"], "drop probability must be in"),
            (&["--port", "0"], "must be 1..=65535"),
            (
                &["--interface", "a-name-that-is-too-long"],
                "interface name",
            ),
            (&["--interface", "a/b"], "interface name"),
            // aya refused a NUL only when attaching, after the service said it was starting.
            (&["--interface", "eth\u{0}"], "interface name"),
            (&["--interface", "a\tb"], "interface name"),
            (
                &["--model", "gilbert-elliott", "--ge-p", "0.1"],
                "--ge-p and --ge-r are required",
            ),
            (
                &["--ge-p", "0.1", "--ge-r", "0.2"],
                "only apply with --model gilbert-elliott",
            ),
            (
                &["--model", "gilbert-elliott", "--ge-p", "0.1", "--ge-r", "0"],
                "r must be > 0",
            ),
        ];
        for (args, reason) in cases {
            let err = settings(args).unwrap_err();
            assert!(err.contains(reason), "{args:?}: {err}");
        }
        let err = settings(&["--fixed-drop", "0.1", "--model", "gilbert-elliott"]).unwrap_err();
        assert!(err.contains("cannot be used with"), "{err}");
    }
}
