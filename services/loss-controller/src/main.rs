//! keymash-loss-controller: see the library crate for what it does and why.
#![forbid(unsafe_code)]

use anyhow::Context as _;
use clap::Parser as _;
use keymash_loss_controller::cli::Args;
use keymash_loss_controller::runner::{self, NoMash, NoStats};
use keymash_service::Lifecycle;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut lifecycle = Lifecycle::start("keymash-loss-controller")?;
    let config = args.service.load_config().with_context(|| format!("loading {}", args.service.config.display()))?;
    let settings = args.settings(&config)?;
    runner::run(&settings, &mut lifecycle, &mut NoMash, &mut NoStats)?;
    Ok(())
}
