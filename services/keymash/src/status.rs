//! `keymash status`: every stage and segment of the pipeline on this machine, in one table
//! (the report itself is `keymash_watch::status`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use keymash_core::config::{Config, DEFAULT_CONFIG_PATH};
use keymash_shm::Prefix;
use keymash_watch::status::{gather, render_table, StatusReport};

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// The configuration file (for the shared-memory prefix).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Use this shared-memory prefix instead of the configured one.
    #[arg(long)]
    prefix: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Refresh every SECONDS until interrupted.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "1")]
    watch: Option<f64>,
}

pub(crate) fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let prefix_name = match &args.prefix {
        Some(p) => p.clone(),
        None => load_config(&args.config)?.shm.prefix,
    };
    let prefix =
        Prefix::new(&prefix_name).with_context(|| format!("bad prefix {prefix_name:?}"))?;
    let Some(interval) = args.watch else {
        print_report(&gather(&prefix)?, args.json)?;
        return Ok(ExitCode::SUCCESS);
    };
    if !(interval.is_finite() && interval >= 0.1) {
        anyhow::bail!("--watch takes an interval of at least 0.1 seconds, got {interval}");
    }
    loop {
        let report = gather(&prefix)?;
        if !args.json {
            // Clear the screen and home the cursor, like watch(1).
            print!("\x1b[2J\x1b[H");
        }
        print_report(&report, args.json)?;
        std::thread::sleep(Duration::from_secs_f64(interval));
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    if path == std::path::Path::new(DEFAULT_CONFIG_PATH) && !path.exists() {
        return Ok(Config::default());
    }
    Config::load(path).map_err(anyhow::Error::from)
}

fn print_report(report: &StatusReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", render_table(report));
    }
    Ok(())
}
