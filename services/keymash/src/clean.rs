//! `keymash clean --role sender|receiver|all`: remove a role's shared-memory segments.
//!
//! The rings deliberately outlive their processes (a restarted stage carries on, the delay
//! buffer keeps its video), so something must remove them when the exhibit is switched off:
//! each target's cleanup unit runs this after its stages have stopped.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use keymash_core::config::{Config, DEFAULT_CONFIG_PATH};
use keymash_pipeline::{Role, Segments, Service};
use keymash_shm::{list_segments, remove_segment, OpenError, Prefix};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RoleArg {
    Sender,
    Receiver,
    All,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CleanArgs {
    /// Whose segments: the sender's, the receiver's, or both.
    #[arg(long, value_enum)]
    role: RoleArg,
    /// The configuration file (for the shared-memory prefix).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Use this shared-memory prefix instead of the configured one.
    #[arg(long)]
    prefix: Option<String>,
    /// Remove segments even if their writer still seems to run (a recorded pid can be reused
    /// by an unrelated process; the cleanup units pass this once their stages have stopped).
    #[arg(long)]
    force: bool,
}

/// The segment names of every service of `role`: what they write, and their statistics cells.
pub(crate) fn role_segments(role: RoleArg) -> Vec<String> {
    Service::ALL
        .into_iter()
        .filter(|s| match role {
            RoleArg::Sender => s.role() == Role::Sender,
            RoleArg::Receiver => s.role() == Role::Receiver,
            RoleArg::All => true,
        })
        .flat_map(|s| {
            s.owned_segments()
                .iter()
                .map(|n| (*n).to_owned())
                .chain([s.stats_cell()])
        })
        .collect()
}

pub(crate) fn run(args: &CleanArgs) -> anyhow::Result<ExitCode> {
    let prefix_name = match &args.prefix {
        Some(p) => p.clone(),
        None if args.config.as_path() == std::path::Path::new(DEFAULT_CONFIG_PATH)
            && !args.config.exists() =>
        {
            Config::default().shm.prefix
        }
        None => Config::load(&args.config)?.shm.prefix,
    };
    let prefix =
        Prefix::new(&prefix_name).with_context(|| format!("bad prefix {prefix_name:?}"))?;
    let mut config = Config::default();
    config.shm.prefix = prefix_name;
    let segments = Segments::new(&config)?;
    let present = list_segments(&prefix).context("cannot list /dev/shm")?;

    let (mut removed, mut kept) = (0, 0);
    for name in role_segments(args.role) {
        let id = segments.id(&name)?;
        let live_writer = present
            .iter()
            .find(|r| r.id == id)
            .and_then(|r| r.info.as_ref().ok())
            .map(|info| info.producer);
        match live_writer {
            None if !present.iter().any(|r| r.id == id) => continue,
            Some(p) if p.alive && !args.force => {
                println!(
                    "kept {}: its writer (pid {}) is still running",
                    id.path(),
                    p.pid
                );
                kept += 1;
                continue;
            }
            _ => {}
        }
        match remove_segment(&id) {
            Ok(()) => {
                println!("removed {}", id.path());
                removed += 1;
            }
            Err(OpenError::NotFound { .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", id.path())),
        }
    }
    println!("{removed} segment(s) removed, {kept} kept");
    Ok(if kept > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_cleans_its_own_segments_and_statistics() {
        let sender = role_segments(RoleArg::Sender);
        assert!(sender.contains(&"raw-frames".to_owned()));
        assert!(sender.contains(&"delay-hold".to_owned()));
        assert!(sender.contains(&"stats.net-tx".to_owned()));
        assert!(!sender.contains(&"mash".to_owned()));
        let receiver = role_segments(RoleArg::Receiver);
        assert!(
            receiver.contains(&"mash".to_owned())
                && receiver.contains(&"stats.loss-controller".to_owned())
        );
        assert_eq!(
            role_segments(RoleArg::All).len(),
            sender.len() + receiver.len()
        );
    }
}
