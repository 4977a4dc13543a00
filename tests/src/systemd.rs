//! systemd booted as PID 1 in a private PID and mount namespace, for tests of the real units.
//!
//! The booted system sees the host's file system only through an overlay whose writes land in
//! a tmpfs, with `/proc/sys` and `/sys` read-only: whatever it does at boot (systemd-tmpfiles
//! cleaning /tmp, journald, sysusers, our own `install.sh`) stays inside and vanishes with it.
//! `/dev` (so `/dev/shm`) and `/run/netns` are shared with the host, so a test can read the
//! pipeline's shared memory and place units in network namespaces it created.
//!
//! Dropping the guard powers the system off (and SIGKILLs it if it does not go): `unshare
//! --kill-child` takes the whole PID namespace down with it.
//!
//! Each booted systemd gets a control group of its own (a child of the test's, in the
//! `name=systemd` and cgroup v2 hierarchies) before it starts: systemd in a container manages
//! the cgroup it finds itself in as its root, so two booted systems (two PCs in one test, or
//! tests run side by side) would otherwise share `system.slice/<unit>` cgroups and see each
//! other's processes as their units'. The guard removes those cgroups when it drops.
//!
//! [`BootedSystemd::boot`] starts nothing but what the test starts (`kmtest-boot.target`);
//! [`BootedSystemd::boot_default`] boots to the default target, as a PC does, so what is
//! enabled (`WantedBy=`) comes up on its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use keymash_testbed::ChildGuard;

/// Boots the private root, runs the setup script inside it (as `bash SETUP`), then execs systemd.
const BOOT_SCRIPT: &str = r#"#!/bin/bash
set -euo pipefail
work="$1" setup="$2" unit="${3:-}"
# A control group of our own (see the module documentation), in each hierarchy systemd tracks
# processes in; listed in $work/cgroups for the guard to remove. Best effort: without it the
# boot still works, only not isolated from another booted system.
: >"$work/cgroups"
own="$(basename "$work")"
while IFS=: read -r _ controllers path; do
  dir=""
  if [ "$controllers" = name=systemd ]; then dir="/sys/fs/cgroup/systemd$path"
  elif [ -z "$controllers" ]; then
    if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then dir="/sys/fs/cgroup$path"
    elif [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then dir="/sys/fs/cgroup/unified$path"; fi
  fi
  [ -n "$dir" ] || continue
  dir="${dir%/}/$own"
  if mkdir "$dir" && echo "$dir" >>"$work/cgroups" && echo 0 >"$dir/cgroup.procs"; then :; else
    echo "boot.sh: could not move into $dir; this boot is not isolated from others" >&2
  fi
done </proc/self/cgroup
mount --make-rprivate /
mkdir -p "$work/layers" "$work/root"
mount -t tmpfs -o size=4g,mode=0755 keymash-test "$work/layers"
mkdir -p "$work/layers/upper" "$work/layers/work"
root="$work/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/layers/upper,workdir=$work/layers/work" "$root"
mount -t proc proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
mount --rbind /sys "$root/sys"
mount -o remount,bind,ro "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755 run "$root/run"
mkdir -p "$root/run/netns"
if [ -d /run/netns ]; then mount --rbind /run/netns "$root/run/netns"; fi
mkdir -p "$root/oldroot"
cd "$root"
pivot_root . oldroot
umount -l /oldroot
cd /
mkdir -p /etc/systemd/system
if [ -z "$unit" ]; then
  # Booting the default target as a PC does: only what the setup enables may come up. The units
  # this machine's image enables (a database, apt timers) are not the PC under test, and a getty
  # would take over the host's console (/dev is the host's).
  find /etc/systemd/system -mindepth 2 -maxdepth 2 \( -path '*.wants/*' -o -path '*.requires/*' \) -delete
  ln -sfn /dev/null /etc/systemd/system/getty.target
fi
bash "$setup"
printf '[Unit]\nDescription=keymash test boot: nothing but what the test starts\n' > /etc/systemd/system/kmtest-boot.target
export container=keymash-test
if [ -n "$unit" ]; then exec /lib/systemd/systemd --system --unit="$unit"; fi
exec /lib/systemd/systemd --system
"#;

/// The longest a command run inside the booted system may take: beyond systemd's own job
/// timeout (DefaultTimeoutStartSec, 90 s), so a `systemctl start` that systemd gives up on
/// reports systemd's answer; only a command that hangs outright reaches it.
pub const EXEC_LIMIT: Duration = Duration::from_secs(120);

/// A booted systemd; see the module documentation.
#[derive(Debug)]
pub struct BootedSystemd {
    unshare: ChildGuard,
    /// systemd's pid in the host's PID namespace (for nsenter and the poweroff signal).
    host_pid: u32,
    work: PathBuf,
}

impl BootedSystemd {
    /// Boot with `setup` (a bash script run inside the private root before systemd starts;
    /// typically `install.sh --root /` plus the test's configuration and drop-ins), to a target
    /// that starts nothing: the test starts what it needs with `systemctl start`.
    pub fn boot(tag: &str, setup: &str) -> Result<Self, String> {
        Self::boot_to(tag, setup, "kmtest-boot.target", Duration::from_secs(60))
    }

    /// Boot with `setup` to the default target, as a PC boots: whatever the setup enabled
    /// (`systemctl enable`, that is `WantedBy=` of the default target's dependencies) starts
    /// with no `systemctl start`. Units the host's image enables are disabled first and
    /// `getty.target` is masked (it would run a getty on the host's console). Returns once the
    /// boot has finished (`systemctl is-system-running` says running or degraded), so every
    /// enabled Type=notify service has said READY=1 or failed by then.
    pub fn boot_default(tag: &str, setup: &str) -> Result<Self, String> {
        // A boot's start jobs include every enabled service's; under load that takes longer
        // than the bare test boot, but far less than systemd's own 90 s job timeout.
        Self::boot_to(tag, setup, "", Duration::from_secs(120))
    }

    fn boot_to(tag: &str, setup: &str, unit: &str, timeout: Duration) -> Result<Self, String> {
        let work = std::env::temp_dir().join(keymash_testbed::unique_name(&format!(
            "keymash-systemd-{tag}"
        )));
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let boot = work.join("boot.sh");
        let setup_path = work.join("setup.sh");
        std::fs::write(&boot, BOOT_SCRIPT).map_err(|e| e.to_string())?;
        std::fs::write(&setup_path, setup).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(work.join("boot.log")).map_err(|e| e.to_string())?;
        let unshare = ChildGuard::spawn(
            "unshare systemd",
            Command::new("unshare")
                .args([
                    "--pid",
                    "--mount",
                    "--uts",
                    "--fork",
                    "--kill-child=SIGKILL",
                    "bash",
                ])
                .arg(&boot)
                .arg(&work)
                .arg(&setup_path)
                .arg(unit)
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log),
        )
        .map_err(|e| e.to_string())?;
        let mut booted = BootedSystemd {
            unshare,
            host_pid: 0,
            work,
        };
        booted.host_pid = booted.wait_for_systemd(timeout)?;
        Ok(booted)
    }

    /// The boot log (setup output and systemd's first words), for failure messages.
    pub fn boot_log(&self) -> String {
        std::fs::read_to_string(self.work.join("boot.log")).unwrap_or_default()
    }

    fn wait_for_systemd(&mut self, timeout: Duration) -> Result<u32, String> {
        let deadline = Instant::now() + timeout;
        let unshare_pid = self.unshare.pid();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.unshare.try_wait() {
                return Err(format!(
                    "the boot ended early ({status}):\n{}",
                    self.boot_log()
                ));
            }
            let children =
                std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
                    .unwrap_or_default();
            if let Some(pid) = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok())
            {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    self.host_pid = pid;
                    let state = self.systemctl(&["is-system-running"]);
                    let state = String::from_utf8_lossy(&state.stdout).trim().to_owned();
                    if state == "running" || state == "degraded" {
                        return Ok(pid);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let jobs = if self.host_pid != 0 {
            let out = self.systemctl(&["list-jobs", "--no-pager"]);
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            String::new()
        };
        Err(format!(
            "systemd did not finish booting within {timeout:?}; jobs still queued:\n{jobs}\nboot log:\n{}",
            self.boot_log()
        ))
    }

    /// Run `program args` inside the booted system (its mounts, PID namespace and root); fails
    /// the test if it has not finished within [`EXEC_LIMIT`].
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let out = Command::new("timeout")
            .args(["--kill-after=5", &EXEC_LIMIT.as_secs().to_string()])
            .args([
                "nsenter",
                "-t",
                &self.host_pid.to_string(),
                "-m",
                "-p",
                "-r",
                "-w",
                program,
            ])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("timeout nsenter {program}: {e}"));
        // timeout(1): 124 when the time ran out, 137 when it had to SIGKILL.
        assert!(
            !matches!(out.status.code(), Some(124 | 137)),
            "`{program} {}` inside the booted system did not finish within {EXEC_LIMIT:?}:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn systemctl(&self, args: &[&str]) -> Output {
        self.exec("systemctl", args)
    }

    /// `systemctl show -p PROPERTY --value UNIT`.
    pub fn property(&self, unit: &str, property: &str) -> String {
        let out = self.systemctl(&["show", "-p", property, "--value", unit]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Poll `check` every 100 ms until it holds or `timeout` passes.
    pub fn wait_until(&self, timeout: Duration, mut check: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        check(self)
    }

    pub fn work_dir(&self) -> &Path {
        &self.work
    }

    /// The booted systemd's pid in the host's PID namespace (its units' pids are of its own).
    pub fn host_pid(&self) -> u32 {
        self.host_pid
    }
}

impl Drop for BootedSystemd {
    fn drop(&mut self) {
        if self.host_pid != 0 {
            // SIGRTMIN+4: systemd's "poweroff" signal; in a container it exits when done.
            let _ = Command::new("kill")
                .args(["-s", "SIGRTMIN+4", &self.host_pid.to_string()])
                .status();
            let _ = self.unshare.terminate(Duration::from_secs(15));
        } else {
            let _ = self.unshare.kill_hard();
        }
        remove_cgroups(&self.work.join("cgroups"));
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// Removes the booted system's own control groups (listed in `list`, one per line) and
/// everything systemd created below them. The PID namespace is gone by now, but the kernel
/// frees a cgroup's last tasks asynchronously: a busy one is retried for up to 5 s.
fn remove_cgroups(list: &Path) {
    fn remove_tree(dir: &Path) -> bool {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&entry.path());
                }
            }
        }
        std::fs::remove_dir(dir).is_ok() || !dir.exists()
    }
    let text = std::fs::read_to_string(list).unwrap_or_default();
    for dir in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let dir = Path::new(dir);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !remove_tree(dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if dir.exists() {
            eprintln!(
                "keymash-tests: could not remove the booted system's cgroup {}",
                dir.display()
            );
        }
    }
}
