//! `keymash demo`: the whole installation on one machine for a bounded time.
//!
//! As root, two network namespaces joined by a veth pair stand in for the two PCs: capture,
//! delay-buffer, encoder and net-tx in the sender's, net-rx, loss-controller (the eBPF filter on
//! the receiver's veth end), display and mash-input in the receiver's. Without root everything
//! runs on loopback and loss is off. A scripted visitor idles, mashes and idles again; every
//! second a table row shows what the pipeline does. At the end a contact sheet shows the
//! displayed pictures at low and at high mashing, and a plot the table's figures over the run.
//!
//! Everything the demo creates (namespaces, processes, shared memory, the FIFO) is removed when
//! it ends, also on Ctrl-C and on error: each lives in a guard that removes it when dropped.

mod config;
mod plot;
mod sheet;
mod watch;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keymash_core::config::Config;
use keymash_pipeline::Service;
use keymash_shm::Prefix;
use keymash_testbed::{ChildGuard, Netns, NetnsPair};

use config::Network;
use watch::{settled_after, Figures, Probe, Watcher, HIGH_MASH, LOW_MASH};

/// The exhibit's delay, for the note that the demo uses a shorter one.
const EXHIBIT_DELAY_SECONDS: f64 = 30.0;
/// How long a service may take to publish its statistics after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a service may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// How long the pipeline runs once every service is up, in seconds (at least 10).
    #[arg(long, default_value_t = 40)]
    seconds: u32,
    /// Directory for the configuration, the services' logs, the contact sheet and the plot.
    #[arg(long, default_value = "keymash-demo")]
    out: PathBuf,
    /// Seconds between the camera and the screen (the exhibit uses 30).
    #[arg(long, default_value_t = 3.0)]
    delay: f64,
    /// Keep the displayed video as OUT/displayed.y4m (about 4 MB a second).
    #[arg(long)]
    keep: bool,
}

/// Removes the demo's shared-memory segments when dropped.
struct ShmGuard(Prefix);

impl Drop for ShmGuard {
    fn drop(&mut self) {
        if let Err(e) = keymash_shm::remove_segments(&self.0) {
            eprintln!(
                "keymash demo: removing the shared-memory segments {}.*: {e}",
                self.0
            );
        }
    }
}

/// Removes a file (the FIFO) when dropped.
struct FileGuard(PathBuf);

impl Drop for FileGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One service of the demo, started by [`Demo::start`].
struct Running {
    service: Service,
    log: PathBuf,
    child: ChildGuard,
}

/// The started services, stopped in reverse order (mash-input first, loss-controller, which
/// takes its filter away, among the last) by [`Demo::stop`] or, on error, killed by the guards.
struct Demo {
    bin_dir: PathBuf,
    logs: PathBuf,
    running: Vec<Running>,
    stop: Arc<AtomicBool>,
}

impl Demo {
    /// Starts `binary` with `config` (inside `netns` if given) and waits for its statistics cell.
    fn start(
        &mut self,
        service: Service,
        netns: Option<&Netns>,
        config: &Path,
        probe: &mut Probe,
    ) -> anyhow::Result<()> {
        self.start_named(service, service.binary(), netns, config)?;
        let started = Instant::now();
        loop {
            if probe.stats(service).is_some() {
                return Ok(());
            }
            self.check_alive()?;
            anyhow::ensure!(!self.stop.load(Ordering::Relaxed), "interrupted");
            anyhow::ensure!(
                started.elapsed() < START_TIMEOUT,
                "{} did not publish its statistics within {START_TIMEOUT:?}; see {}",
                service.binary(),
                self.running
                    .last()
                    .map_or_else(String::new, |r| r.log.display().to_string())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `binary` (named `name` in the logs) without waiting for it.
    fn start_named(
        &mut self,
        service: Service,
        name: &str,
        netns: Option<&Netns>,
        config: &Path,
    ) -> anyhow::Result<()> {
        let program = self.bin_dir.join(service.binary());
        anyhow::ensure!(
            program.exists(),
            "{} is not built (cargo build --release --bins)",
            program.display()
        );
        let mut command = match netns {
            Some(netns) => netns.command(&program),
            None => Command::new(&program),
        };
        let log = self.logs.join(format!("{name}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        command
            .arg("--config")
            .arg(config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = ChildGuard::spawn(name, &mut command)?;
        self.running.push(Running {
            service,
            log,
            child,
        });
        Ok(())
    }

    /// An error naming the first service that has exited, and its log.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for r in &mut self.running {
            if let Some(status) = r.child.try_wait()? {
                anyhow::bail!(
                    "{} exited ({status}); see {}",
                    r.service.binary(),
                    r.log.display()
                );
            }
        }
        Ok(())
    }

    /// SIGTERM to each service in reverse start order; problems are reported, not fatal.
    fn stop(&mut self) {
        while let Some(mut r) = self.running.pop() {
            if let Err(e) = r.child.terminate(STOP_TIMEOUT) {
                eprintln!("keymash demo: {e}");
            }
        }
    }
}

/// Hard-links every segment `/dev/shm/<from>.*` but the display's statistics cell to
/// `/dev/shm/<to>.*`, so a display configured with prefix `to` reads the pipeline's rings and
/// cells but publishes statistics of its own. (`shm_open` refuses symbolic links.)
fn link_segments(from: &str, to: &str) -> anyhow::Result<()> {
    let own = format!("{from}.{}", Service::Display.stats_cell());
    for entry in std::fs::read_dir("/dev/shm")?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix(&format!("{from}.")) {
            if name != own {
                let link = Path::new("/dev/shm").join(format!("{to}.{rest}"));
                std::fs::hard_link(entry.path(), &link)
                    .with_context(|| format!("linking {}", link.display()))?;
            }
        }
    }
    Ok(())
}

/// Two free UDP ports on loopback.
fn free_ports() -> anyhow::Result<(u16, u16)> {
    let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let b = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// Seconds into the run.
    t: u32,
    figures: Figures,
    psnr: Option<f64>,
}

impl Row {
    /// The row as a point of the plot. Without root there is no loss filter: its drop is no
    /// figure (the table says "off"), so the plot leaves that panel empty rather than at zero.
    fn sample(&self, root: bool) -> plot::Sample {
        plot::Sample {
            t: f64::from(self.t),
            mash: self.figures.mash.map(f64::from),
            drop_percent: self.figures.drop_percent.filter(|_| root),
            quality: self.figures.quality.map(f64::from),
            psnr: self.psnr,
        }
    }
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.seconds >= 10,
        "--seconds {} is too short: the scripted visitor needs at least 10",
        args.seconds
    );
    anyhow::ensure!(
        args.delay.is_finite() && args.delay >= 0.0,
        "--delay must be 0 or more seconds"
    );
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let out = &args.out;
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let out = out.canonicalize()?;
    let logs = out.join("logs");
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("the keymash executable's directory")?
        .to_owned();
    let root = nix::unistd::geteuid().is_root();
    let window =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();

    println!("keymash demo: the whole pipeline on this machine for {} s, delay {} s (the exhibit uses {EXHIBIT_DELAY_SECONDS:.0} s)", args.seconds, args.delay);
    // Declared first, dropped last: the processes (below) are gone before their namespaces.
    let pair = if root {
        let pair = NetnsPair::create("demo").context("creating the two network namespaces")?;
        println!(
            "  two network namespaces stand in for the two PCs: {} (sender, {}) and {} (receiver, {}, eBPF loss filter on {})",
            pair.left.name(),
            NetnsPair::LEFT_V4,
            pair.right.name(),
            NetnsPair::RIGHT_V4,
            NetnsPair::RIGHT_INTERFACE
        );
        Some(pair)
    } else {
        println!("  not root: everything runs on loopback and LOSS IS OFF (no namespaces, no eBPF filter); run as root for the loss");
        None
    };
    let network = match &pair {
        Some(_) => Network {
            sender: NetnsPair::LEFT_V4,
            sender_port: 5006,
            receiver: NetnsPair::RIGHT_V4,
            video_port: 5004,
            loss_interface: Some(NetnsPair::RIGHT_INTERFACE),
        },
        None => {
            let (sender_port, video_port) = free_ports()?;
            Network {
                sender: Ipv4Addr::LOCALHOST,
                sender_port,
                receiver: Ipv4Addr::LOCALHOST,
                video_port,
                loss_interface: None,
            }
        }
    };
    let prefix = format!("kmdemo{}", std::process::id());
    let _shm = ShmGuard(Prefix::new(&prefix)?);
    let fifo = out.join("displayed.fifo");
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .with_context(|| format!("creating the FIFO {}", fifo.display()))?;
    let _fifo = FileGuard(fifo.clone());

    let script = config::mash_script(args.seconds);
    // The demo's link is protected as the exhibit's is: a key of its own, beside its files.
    let key_path = out.join("keymash.key");
    let key = keymash_core::key::PreSharedKey::from_bytes(keymash_service::random::bytes()?);
    std::fs::write(&key_path, key.to_file_text())
        .with_context(|| format!("writing {}", key_path.display()))?;
    std::fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    let security = format!("[security]\nkey_file = \"{}\"\n", key_path.display());
    let config_path = out.join("keymash.toml");
    std::fs::write(
        &config_path,
        config::config_text(
            &prefix,
            &network,
            args.delay,
            &script,
            &config::y4m_output(&fifo),
        ) + &security,
    )?;
    let config = Config::load(&config_path)?;
    println!(
        "  configuration: {} (shared memory /dev/shm/{prefix}.*), logs: {}",
        config_path.display(),
        logs.display()
    );
    println!("  scripted visitor: {script}");
    // The window: a second display instance. Two cannot share the display's statistics cell
    // (one live writer per cell), so the window instance has a prefix of its own; the segments
    // it reads are hard links to the pipeline's (see `link_segments`).
    let window_prefix = format!("{prefix}w");
    let _window_shm = ShmGuard(Prefix::new(&window_prefix)?);
    let window_config = out.join("keymash-window.toml");
    if window {
        std::fs::write(
            &window_config,
            config::config_text(&window_prefix, &network, args.delay, &script, "window")
                + &security,
        )?;
        println!(
            "  a display is there: a second display instance shows the window (prefix {window_prefix}, reading the \
             pipeline's segments through hard links, so its statistics cell is its own); the table measures the \
             headless one"
        );
    }

    let keep = out.join("displayed.y4m");
    let watcher = Watcher::start(&config, &fifo, args.keep.then_some(keep.as_path()))?;
    let mut probe = Probe::new(&config)?;
    let mut demo = Demo {
        bin_dir,
        logs,
        running: Vec::new(),
        stop: Arc::clone(&stop),
    };
    let (left, right) = (
        pair.as_ref().map(|p| &p.left),
        pair.as_ref().map(|p| &p.right),
    );
    let result = run_pipeline(
        args,
        &config_path,
        window.then_some((window_config.as_path(), &prefix, &window_prefix)),
        &mut demo,
        &mut probe,
        &watcher,
        root,
        (left, right),
    );
    demo.stop();
    let observations = watcher.finish();
    let rows = result?;
    if let Some(error) = &observations.error {
        anyhow::bail!("reading the displayed pictures: {error}");
    }

    let sheet = out.join("contact-sheet.png");
    sheet::write(
        &sheet,
        config::WIDTH,
        config::HEIGHT,
        &observations.low,
        &observations.high,
    )?;
    let (w, h) = sheet::size(config::WIDTH, config::HEIGHT);
    println!("contact sheet: {} ({w}x{h}: displayed pictures at low mashing, left, and high mashing, right)", sheet.display());
    let plot_path = out.join("plot.png");
    let samples: Vec<plot::Sample> = rows.iter().map(|r| r.sample(root)).collect();
    plot::write(&plot_path, &samples)?;
    println!(
        "plot: {} ({}x{}: mash level, drop %, quality and PSNR over the run, one point a second)",
        plot_path.display(),
        plot::WIDTH,
        plot::HEIGHT
    );
    if args.keep {
        println!("displayed video: {}", keep.display());
    }
    println!("{}", summary(&rows, root, settled_after(&config)));
    Ok(ExitCode::SUCCESS)
}

/// Starts every service, runs the scripted visitor for `args.seconds` and prints the table.
#[allow(clippy::too_many_arguments)]
fn run_pipeline(
    args: &DemoArgs,
    config: &Path,
    window: Option<(&Path, &str, &str)>,
    demo: &mut Demo,
    probe: &mut Probe,
    watcher: &Watcher,
    root: bool,
    (left, right): (Option<&Netns>, Option<&Netns>),
) -> anyhow::Result<Vec<Row>> {
    println!("starting the services...");
    if root {
        demo.start(Service::LossController, right, config, probe)?;
    }
    demo.start(Service::NetRx, right, config, probe)?;
    demo.start(Service::Display, right, config, probe)?;
    for service in [
        Service::Capture,
        Service::DelayBuffer,
        Service::Encoder,
        Service::NetTx,
    ] {
        demo.start(service, left, config, probe)?;
    }
    // Last, so the visitor's script starts with the run.
    demo.start(Service::MashInput, right, config, probe)?;
    let start = Instant::now();
    if let Some((window_config, prefix, window_prefix)) = window {
        while probe.read().mash.is_none() {
            demo.check_alive()?;
            anyhow::ensure!(
                start.elapsed() < START_TIMEOUT,
                "mash-input published no mash level"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        link_segments(prefix, window_prefix)?;
        demo.start_named(
            Service::Display,
            "keymash-display-window",
            right,
            window_config,
        )?;
    }
    watcher.begin_run(start);

    println!(
        "{:>5} {:>5} {:>6} {:>7} {:>5} {:>8} {:>8}",
        "t", "mash", "drop%", "quality", "fps", "PSNR dB", "B/frame"
    );
    let mut rows = Vec::new();
    for second in 1..=args.seconds {
        let due = start + Duration::from_secs(u64::from(second));
        while Instant::now() < due {
            anyhow::ensure!(!demo.stop.load(Ordering::Relaxed), "interrupted");
            std::thread::sleep(
                Duration::from_millis(20).min(due.saturating_duration_since(Instant::now())),
            );
        }
        demo.check_alive()?;
        let figures = probe.read();
        let psnr = mean(watcher.take_psnr().into_iter().flatten());
        let drop = if root {
            fmt_opt(figures.drop_percent, 1)
        } else {
            "off".to_owned()
        };
        println!(
            "{:>4}s {:>5} {:>6} {:>7} {:>5} {:>8} {:>8}",
            second,
            fmt_opt(figures.mash.map(f64::from), 2),
            drop,
            figures
                .quality
                .map_or_else(|| "-".to_owned(), |q| q.to_string()),
            fmt_opt(figures.fps, 1),
            fmt_opt(psnr, 1),
            fmt_opt(figures.bytes_per_frame, 0),
        );
        rows.push(Row {
            t: second,
            figures,
            psnr,
        });
    }
    Ok(rows)
}

/// The closing line: mean drop and PSNR at low and at high mashing, over the rows that have
/// settled there (this row and the one before in the band: drop % is the last second's; and
/// past the countdown card the delay buffer shows first, see [`settled_after`]).
fn summary(rows: &[Row], root: bool, settled: Duration) -> String {
    let mut text = String::from("summary:");
    for (name, high) in [("low mashing", false), ("high mashing", true)] {
        let in_band = |r: &Row| {
            r.figures
                .mash
                .is_some_and(|m| if high { m >= HIGH_MASH } else { m < LOW_MASH })
        };
        let rows: Vec<&Row> = rows
            .windows(2)
            .filter(|w| {
                in_band(&w[0]) && in_band(&w[1]) && Duration::from_secs(w[1].t.into()) >= settled
            })
            .map(|w| &w[1])
            .collect();
        let drop = if root {
            format!(
                "drop {}%",
                fmt_opt(mean(rows.iter().filter_map(|r| r.figures.drop_percent)), 1)
            )
        } else {
            "drop off".to_owned()
        };
        let psnr = fmt_opt(mean(rows.iter().filter_map(|r| r.psnr)), 1);
        let _ = write!(text, " {name} ({} s): {drop}, PSNR {psnr} dB;", rows.len());
    }
    text.pop();
    text
}
