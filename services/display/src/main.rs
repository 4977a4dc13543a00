//! keymash-display: the playback cursor. Decodes received payloads into a persistent frame
//! (blocks of lost packets keep their old content: the glitch), presents it at the stream's
//! frame rate after a small playout delay, in an SDL2 window (fullscreen, aspect kept, a border
//! glowing green with the mash level) or headless into image files or a Y4M stream.
//!
//! On a console without X11 or Wayland, run with `SDL_VIDEODRIVER=kmsdrm` (the unit sets it
//! when the receiver has no desktop session); SDL then drives the screen through DRM/KMS.
//! The logic lives in keymash-present; this binary owns the ring, the window and the files.
#![forbid(unsafe_code)]

mod feed;
mod output;
mod screen;
mod service;
mod window;

use std::process::ExitCode;

use clap::Parser;
use keymash_service::ServiceArgs;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Decodes received payloads and presents them (SDL2 window, frames:DIR or y4m:PATH)."
)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    keymash_service::run("keymash-display", &args.service, service::run)
}
