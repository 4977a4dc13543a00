//! The demo's configuration file and scripted visitor.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

/// Picture size of the demo stream: small enough that two cores run all eight services, the
/// demo's own PSNR measurement and the contact sheet comfortably.
pub(super) const WIDTH: usize = 320;
pub(super) const HEIGHT: usize = 240;
/// Width of the glow border the headless display draws around the picture (a multiple of 8,
/// so it is the border the canvas really gets).
pub(super) const GLOW_BORDER_PX: u32 = 16;

/// Where the two halves of the pipeline talk: the veth pair of the two namespaces, or loopback.
#[derive(Debug, Clone, Copy)]
pub(super) struct Network {
    pub sender: Ipv4Addr,
    pub sender_port: u16,
    pub receiver: Ipv4Addr,
    pub video_port: u16,
    /// The receiver's interface the loss filter sits on (None: no filter).
    pub loss_interface: Option<&'static str>,
}

/// The scripted visitor for a run of `seconds`: nobody for the first 30%, a ramp (5 then 10
/// varied keys a second), 14 keys a second until 80% of the run (above the level where the
/// default curve switches loss off), then nobody again. The pattern's period is the run.
pub(super) fn mash_script(seconds: u32) -> String {
    let n = f64::from(seconds);
    let at = |fraction: f64| (n * fraction * 10.0).round() / 10.0;
    let segments = [
        (0.0, at(0.3), 0),
        (at(0.3), at(0.35), 5),
        (at(0.35), at(0.4), 10),
        (at(0.4), at(0.8), 14),
        (at(0.8), n, 0),
    ];
    segments
        .iter()
        .filter(|(start, end, _)| end > start)
        .map(|(start, end, rate)| format!("{start}-{end}s:{rate}/s"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The configuration text: every service of the demo reads it. `output` is the display's
/// output (`y4m:PATH` for the measured instance, `window` for the one on screen).
pub(super) fn config_text(
    prefix: &str,
    network: &Network,
    delay: f64,
    script: &str,
    output: &str,
) -> String {
    let mut text = format!(
        "# Written by `keymash demo`; every key not set here has its default (deploy/keymash.toml).\n\
         [shm]\nprefix = \"{prefix}\"\ngroup_access = false\n\
         [video]\nwidth = {WIDTH}\nheight = {HEIGHT}\nfps = 30\n\
         [network]\nsender_address = \"{}\"\nsender_port = {}\nreceiver_address = \"{}\"\nvideo_port = {}\n\
         [capture]\nsource = \"synthetic\"\n\
         [delay]\nseconds = {delay:?}\n\
         [display]\noutput = \"{output}\"\nfullscreen = false\nglow_border_px = {GLOW_BORDER_PX}\nhud = {}\n\
         [input]\nsource = \"script:{script}\"\n",
        network.sender,
        network.sender_port,
        network.receiver,
        network.video_port,
        output == "window",
    );
    if let Some(interface) = network.loss_interface {
        let _ = write!(text, "[loss]\ninterface = \"{interface}\"\n");
    }
    text
}

/// `y4m:PATH` with the path as the configuration file needs it.
pub(super) fn y4m_output(path: &Path) -> String {
    format!("y4m:{}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_idles_ramps_holds_and_idles_over_the_whole_run() {
        assert_eq!(
            mash_script(40),
            "0-12s:0/s,12-14s:5/s,14-16s:10/s,16-32s:14/s,32-40s:0/s"
        );
        let config = keymash_core::config::Config::from_toml_str(&config_text(
            "kmdemo1",
            &Network {
                sender: Ipv4Addr::LOCALHOST,
                sender_port: 5006,
                receiver: Ipv4Addr::LOCALHOST,
                video_port: 5004,
                loss_interface: Some("km-right"),
            },
            3.0,
            &mash_script(15),
            "y4m:/tmp/x.y4m",
        ))
        .expect("the demo's configuration is valid");
        assert_eq!(config.video.width as usize, WIDTH);
    }
}
