//! Where key presses come from: evdev keyboards, a FIFO of `input_event` records, or a script.
//! The devices and files live here; parsing and classification are keymash-input's.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keymash_core::mash::KeyCode;
use keymash_input::{is_keyboard, key_press, parse_bitmap, EventParser, ScriptPlayer};
use keymash_pipeline::access::{
    denied_advice_now, denied_short, FileAccess, OpenProblems, ProcessUser,
};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};

/// Where the kernel lists input devices.
const SYSFS_INPUT: &str = "/sys/class/input";
/// Where their device nodes are.
const DEV_INPUT: &str = "/dev/input";
/// How often /sys/class/input is rescanned for keyboards plugged in since: a visitor who pulls
/// the keyboard out and plugs it back in sees it work again within this time.
pub(crate) const RESCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes read per read(2): 64 events, more than a keyboard sends between two polls.
const READ_CHUNK: usize = 64 * keymash_input::EVENT_SIZE;
/// How long mash-input runs without a keyboard before it warns (once) that there is none: a
/// keyboard is found by the first scan, so this is only time for a slow USB enumeration.
pub(crate) const NO_KEYBOARD_WARN_AFTER: Duration = Duration::from_secs(5);
/// The group that owns keyboard device nodes on Debian and Ubuntu (udev's rules).
const INPUT_GROUP: &str = "input";

/// Why a key source could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    #[error("cannot create the FIFO {path}: {source}")]
    CreateFifo { path: PathBuf, source: nix::Error },
    #[error("{path} exists and is not a FIFO")]
    NotAFifo { path: PathBuf },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("waiting for input failed: {0}")]
    Poll(nix::Error),
}

/// One open keyboard.
#[derive(Debug)]
struct Keyboard {
    file: File,
    parser: EventParser,
}

/// Every keyboard on the machine, followed through hot-plug.
#[derive(Debug)]
pub(crate) struct Keyboards {
    sysfs_input: PathBuf,
    dev_input: PathBuf,
    open: BTreeMap<String, Keyboard>,
    last_scan: Option<Instant>,
    /// Keyboards listed by the kernel that could not be opened, and why.
    problems: OpenProblems,
    /// Since when no keyboard has been open, and whether that was warned about.
    none_since: Option<Instant>,
    none_warned: bool,
    /// Why the kernel's list of input devices could not be read, as last logged.
    scan_failure: Option<String>,
}

impl Default for Keyboards {
    fn default() -> Self {
        Keyboards::at(Path::new(SYSFS_INPUT), Path::new(DEV_INPUT))
    }
}

impl Keyboards {
    /// Keyboards listed under `sysfs_input` with device nodes in `dev_input` (tests use a
    /// fake tree; the service uses /sys/class/input and /dev/input).
    pub(crate) fn at(sysfs_input: &Path, dev_input: &Path) -> Self {
        Keyboards {
            sysfs_input: sysfs_input.to_owned(),
            dev_input: dev_input.to_owned(),
            open: BTreeMap::new(),
            last_scan: None,
            problems: OpenProblems::default(),
            none_since: None,
            none_warned: false,
            scan_failure: None,
        }
    }

    /// Keyboards open right now.
    pub(crate) fn count(&self) -> usize {
        self.open.len()
    }

    /// Why no keyboard reaches the mash level, for the status line: keyboards that cannot be
    /// opened, or none found at all; `None` while one is open and none fails.
    pub(crate) fn problem(&self) -> Option<String> {
        if let Some(summary) = self.problems.summary() {
            return Some(summary);
        }
        if let Some(failure) = &self.scan_failure {
            return Some(failure.clone());
        }
        self.open.is_empty().then(|| {
            format!(
                "no keyboard found under {} (plug one in)",
                self.dev_input.display()
            )
        })
    }

    /// Opens keyboards that appeared since the last scan. Devices that disappeared are closed
    /// when their read fails (ENODEV), which the kernel reports at once. A keyboard that cannot
    /// be opened is logged at warn once per distinct failure (the scan repeats every second)
    /// and leads the status line until it opens or is unplugged.
    fn rescan(&mut self, now: Instant) {
        if self
            .last_scan
            .is_some_and(|t| now.saturating_duration_since(t) < RESCAN_INTERVAL)
        {
            return;
        }
        self.last_scan = Some(now);
        self.scan(now);
        self.warn_if_none(now);
    }

    fn scan(&mut self, now: Instant) {
        let entries = match std::fs::read_dir(&self.sysfs_input) {
            Ok(entries) => entries,
            Err(e) => {
                let why = format!(
                    "cannot list input devices in {}: {e}",
                    self.sysfs_input.display()
                );
                if self.scan_failure.as_ref() != Some(&why) {
                    log::warn!("{why} (is /sys mounted?); no keyboard can be found");
                    self.scan_failure = Some(why);
                }
                return;
            }
        };
        self.scan_failure = None;
        let mut listed = std::collections::BTreeSet::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("event") || !sysfs_says_keyboard(&entry.path()) {
                continue;
            }
            let node = self.dev_input.join(&name);
            let shown = node.display().to_string();
            listed.insert(shown.clone());
            if self.open.contains_key(&name) {
                continue;
            }
            match open_nonblocking(&node, false) {
                Ok(file) => {
                    let device = device_name(&entry.path());
                    if self.problems.cleared(&shown) {
                        log::warn!("keyboard {shown} ({device}) opened at last");
                    } else {
                        log::info!("keyboard {shown} ({device})");
                    }
                    self.open.insert(
                        name,
                        Keyboard {
                            file,
                            parser: EventParser::new(),
                        },
                    );
                    self.none_since = None;
                    self.none_warned = false;
                }
                Err(e) => {
                    let (short, text) = keyboard_open_failure(&node, &e);
                    if let Some(text) = self.problems.failed(&shown, short, text) {
                        log::warn!("{text}");
                    }
                }
            }
        }
        self.problems.retain(&listed);
        if self.open.is_empty() && self.none_since.is_none() {
            self.none_since = Some(now);
        }
    }

    /// No keyboard at all for [`NO_KEYBOARD_WARN_AFTER`] (and none failing, which was logged
    /// already): said once, as nobody can mash.
    fn warn_if_none(&mut self, now: Instant) {
        let Some(since) = self.none_since else {
            return;
        };
        if self.none_warned
            || self.problems.count() > 0
            || self.scan_failure.is_some()
            || now.saturating_duration_since(since) < NO_KEYBOARD_WARN_AFTER
        {
            return;
        }
        self.none_warned = true;
        log::warn!(
            "no keyboard found under {} for {} s: nobody can mash; plug a keyboard in (it is \
             found within {} s)",
            self.dev_input.display(),
            NO_KEYBOARD_WARN_AFTER.as_secs(),
            RESCAN_INTERVAL.as_secs()
        );
    }

    fn read_presses(&mut self, presses: &mut Vec<KeyCode>) {
        let mut gone = Vec::new();
        let mut buf = [0u8; READ_CHUNK];
        for (name, keyboard) in &mut self.open {
            loop {
                match keyboard.file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        presses.extend(keyboard.parser.feed(&buf[..n]).iter().filter_map(key_press))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::info!("keyboard {name} gone: {e}");
                        gone.push(name.clone());
                        break;
                    }
                }
            }
        }
        for name in gone {
            self.open.remove(&name);
        }
    }
}

/// What to say about a keyboard `node` that cannot be opened: (short form for the status line,
/// full text for the log with the errno and what to do).
fn keyboard_open_failure(node: &Path, e: &io::Error) -> (String, String) {
    if e.kind() == io::ErrorKind::PermissionDenied {
        let shown = node.display().to_string();
        let short = denied_short(
            &format!("keyboard {shown}"),
            FileAccess::of(node).as_ref(),
            ProcessUser::current().as_ref(),
            INPUT_GROUP,
        );
        let advice = denied_advice_now("keyboard", node, INPUT_GROUP);
        (short, format!("{advice} [{e}]"))
    } else {
        (
            format!("cannot open keyboard {}: {e}", node.display()),
            format!(
                "cannot open keyboard {}: {e}; its keys are not counted until it opens (retried \
                 every {} s)",
                node.display(),
                RESCAN_INTERVAL.as_secs()
            ),
        )
    }
}

fn sysfs_says_keyboard(event_dir: &Path) -> bool {
    let caps = event_dir.join("device/capabilities");
    let read = |file: &str| {
        std::fs::read_to_string(caps.join(file))
            .ok()
            .and_then(|t| parse_bitmap(&t).ok())
    };
    match (read("ev"), read("key")) {
        (Some(ev), Some(key)) => is_keyboard(&ev, &key),
        _ => false,
    }
}

fn device_name(event_dir: &Path) -> String {
    std::fs::read_to_string(event_dir.join("device/name"))
        .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned())
}

fn open_nonblocking(path: &Path, write_too: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write_too)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)
}

/// A named pipe of raw `input_event` records. Opened read-write so that it never reads as
/// end-of-file between writers: test scripts can connect and go away as they like.
#[derive(Debug)]
pub(crate) struct Fifo {
    path: PathBuf,
    file: File,
    parser: EventParser,
}

impl Fifo {
    /// Opens `path`, creating the FIFO (mode 0660) if it does not exist.
    pub(crate) fn open(path: &Path) -> Result<Fifo, SourceError> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.file_type().is_fifo() => {}
            Ok(_) => {
                return Err(SourceError::NotAFifo {
                    path: path.to_owned(),
                })
            }
            Err(_) => nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o660))
                .map_err(|source| SourceError::CreateFifo {
                    path: path.to_owned(),
                    source,
                })?,
        }
        let file = open_nonblocking(path, true).map_err(|source| SourceError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Fifo {
            path: path.to_owned(),
            file,
            parser: EventParser::new(),
        })
    }

    fn read_presses(&mut self, presses: &mut Vec<KeyCode>) {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => presses.extend(self.parser.feed(&buf[..n]).iter().filter_map(key_press)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        log::warn!("reading {}: {e}", self.path.display());
                    }
                    break;
                }
            }
        }
    }
}

/// The configured source of key presses.
#[derive(Debug)]
pub(crate) enum KeySource {
    Evdev(Keyboards),
    Fifo(Fifo),
    Script(ScriptPlayer),
}

impl KeySource {
    /// Waits until `deadline` at most (returning early when a key arrives) and appends the key
    /// presses that came in.
    pub(crate) fn wait_for_presses(
        &mut self,
        deadline: Instant,
        presses: &mut Vec<KeyCode>,
    ) -> Result<(), SourceError> {
        let now = Instant::now();
        let wait = deadline.saturating_duration_since(now);
        match self {
            KeySource::Script(player) => {
                std::thread::sleep(wait);
                presses.extend(player.poll(Instant::now()));
                Ok(())
            }
            KeySource::Fifo(fifo) => {
                wait_readable(&[fifo.file.as_fd()], wait)?;
                fifo.read_presses(presses);
                Ok(())
            }
            KeySource::Evdev(keyboards) => {
                keyboards.rescan(now);
                let fds: Vec<_> = keyboards.open.values().map(|k| k.file.as_fd()).collect();
                if fds.is_empty() {
                    std::thread::sleep(wait);
                } else {
                    wait_readable(&fds, wait)?;
                }
                keyboards.read_presses(presses);
                Ok(())
            }
        }
    }

    /// Why the source gives no key presses, for the head of the status line.
    pub(crate) fn problem(&self) -> Option<String> {
        match self {
            KeySource::Evdev(k) => k.problem(),
            KeySource::Fifo(_) | KeySource::Script(_) => None,
        }
    }

    /// Keyboards open (evdev), 1 for a FIFO or script.
    pub(crate) fn devices(&self) -> usize {
        match self {
            KeySource::Evdev(k) => k.count(),
            KeySource::Fifo(_) | KeySource::Script(_) => 1,
        }
    }
}

fn wait_readable(fds: &[std::os::fd::BorrowedFd<'_>], wait: Duration) -> Result<(), SourceError> {
    let mut pollfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let millis = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    match nix::poll::poll(&mut pollfds, PollTimeout::from(millis)) {
        Ok(_) | Err(nix::Error::EINTR) => Ok(()),
        Err(e) => Err(SourceError::Poll(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymash_input::InputEvent;
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    /// A fake /sys/class/input entry and a FIFO standing in for its /dev/input node.
    fn plug(root: &Path, name: &str, ev: &str, key: &str) -> PathBuf {
        let caps = root.join("sys").join(name).join("device/capabilities");
        std::fs::create_dir_all(&caps).unwrap();
        std::fs::write(caps.join("ev"), ev).unwrap();
        std::fs::write(caps.join("key"), key).unwrap();
        std::fs::write(
            root.join("sys").join(name).join("device/name"),
            "test keyboard\n",
        )
        .unwrap();
        let node = root.join("dev").join(name);
        nix::unistd::mkfifo(&node, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        node
    }

    #[test]
    fn keyboards_plugged_in_later_are_found_by_the_rescan_and_mice_are_not() {
        let root = std::env::temp_dir().join(format!("keymash-evdev-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::create_dir_all(root.join("sys")).unwrap();
        let mut keyboards = Keyboards::at(&root.join("sys"), &root.join("dev"));
        let t0 = Instant::now();
        keyboards.rescan(t0);
        assert_eq!(keyboards.count(), 0);

        plug(&root, "event3", "17", "1f0000 0 0 0 0"); // a mouse
        let node = plug(&root, "event7", "120013", "fffffffffffffffe");
        keyboards.rescan(t0 + RESCAN_INTERVAL / 2);
        assert_eq!(
            keyboards.count(),
            0,
            "no rescan before the interval has passed"
        );
        keyboards.rescan(t0 + RESCAN_INTERVAL);
        assert_eq!(
            keyboards.count(),
            1,
            "the keyboard is found, the mouse is not"
        );

        // Its key presses come through; autorepeat and releases do not.
        let mut writer = OpenOptions::new().write(true).open(&node).unwrap();
        for (code, value) in [(30, 1), (30, 2), (30, 0), (31, 1)] {
            writer
                .write_all(&InputEvent::key(code, value).to_bytes())
                .unwrap();
        }
        let mut presses = Vec::new();
        keyboards.read_presses(&mut presses);
        assert_eq!(presses, vec![30, 31]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_keyboard_that_cannot_be_opened_leads_the_status_until_it_opens() {
        let root = std::env::temp_dir().join(format!("keymash-evdev-fail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::create_dir_all(root.join("sys")).unwrap();
        let mut keyboards = Keyboards::at(&root.join("sys"), &root.join("dev"));
        let t0 = Instant::now();
        keyboards.rescan(t0);
        let none = keyboards.problem().unwrap();
        assert!(none.contains("no keyboard found"), "{none}");

        // Listed by the kernel, but its node cannot be opened (here: missing; as a service
        // user outside group `input`: EACCES, which the root-run tests cannot provoke).
        let node = plug(&root, "event7", "120013", "fffffffffffffffe");
        std::fs::remove_file(&node).unwrap();
        keyboards.rescan(t0 + RESCAN_INTERVAL);
        let problem = keyboards.problem().unwrap();
        assert!(
            problem.contains(&node.display().to_string()) && problem.contains("No such file"),
            "{problem}"
        );
        assert_eq!(keyboards.problems.count(), 1);

        // Fine again: the node appears.
        nix::unistd::mkfifo(&node, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        keyboards.rescan(t0 + RESCAN_INTERVAL * 2);
        assert_eq!(keyboards.problem(), None);
        assert_eq!(keyboards.count(), 1);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn permission_denied_on_a_keyboard_names_its_group_and_the_errno() {
        let root = std::env::temp_dir().join(format!("keymash-evdev-acl-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let node = root.join("event3");
        std::fs::write(&node, b"").unwrap();
        // A group this process is not in (as udev gives `input`); only root may hand it out.
        let foreign_group = std::os::unix::fs::chown(&node, None, Some(65534)).is_ok();
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o660)).unwrap();
        let denied = io::Error::from_raw_os_error(13);
        let (short, text) = keyboard_open_failure(&node, &denied);
        assert!(short.contains("permission denied"), "{short}");
        assert!(short.len() <= 128, "{short}");
        assert!(
            text.contains("os error 13") && text.contains("mode 0660"),
            "{text}"
        );
        if foreign_group {
            assert!(text.contains("usermod -aG"), "{text}");
            assert!(short.contains("join group"), "{short}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
