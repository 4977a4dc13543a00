//! keymash-loss-controller: see the library crate for what it does and why.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use keymash_loss_controller::cells::{MashCell, StatsCell};
use keymash_loss_controller::cli::Args;
use keymash_loss_controller::plan::Drive;
use keymash_loss_controller::runner::{self, MashSource, NoMash, NoStats, StatsSink};

fn main() -> ExitCode {
    let args = Args::parse();
    keymash_service::run(
        "keymash-loss-controller",
        &args.service,
        |lifecycle, config| {
            let settings = args
                .settings(&config)
                .context("invalid arguments or [loss] configuration")?;
            let mut mash: Box<dyn MashSource> = match settings.plan.drive {
                Drive::Mash { .. } => Box::new(MashCell::new(&config).context("mash cell")?),
                Drive::Fixed(_) => Box::new(NoMash),
            };
            // Statistics are for people; a broken /dev/shm must not stop the loss control itself.
            let mut stats: Box<dyn StatsSink> = match StatsCell::open(&config) {
                Ok(cell) => Box::new(cell),
                Err(e) => {
                    log::warn!(
                        "no statistics cell ({e}); kernel counters only in the log and STATUS"
                    );
                    Box::new(NoStats)
                }
            };
            runner::run(&settings, lifecycle, mash.as_mut(), stats.as_mut())?;
            Ok(())
        },
    )
}
