//! Command-line arguments shared by every service.

use std::path::{Path, PathBuf};

use keymash_core::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};

use crate::preflight;

/// `--config FILE`, flattened into each service's own arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// The keymash configuration file (one file configures both PCs).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

impl ServiceArgs {
    /// Load the configuration and run the check `keymash check-config` runs
    /// ([`preflight::check`]), so a service refuses exactly what that command refuses, before it
    /// touches anything. A file named explicitly must exist; the default path may be absent (a
    /// fresh checkout running the demo), in which case every key takes its default and a
    /// warning says so.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        if self.config == Path::new(DEFAULT_CONFIG_PATH) && !self.config.exists() {
            log::warn!("{DEFAULT_CONFIG_PATH} does not exist; using the built-in defaults");
            let config = Config::default();
            preflight::check(&config)?;
            return Ok(config);
        }
        preflight::load(&self.config)
    }
}
