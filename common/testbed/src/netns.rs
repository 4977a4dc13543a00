//! Network namespaces as RAII guards, created and removed with iproute2's `ip netns`.
//!
//! A [`NetnsPair`] stands in for the two exhibit PCs: namespaces `left` (sender) and `right`
//! (receiver) joined by one veth pair, with addresses from the benchmarking ranges
//! 198.18.0.0/15 (RFC 2544) and 2001:2::/48 (RFC 5180), which route nowhere outside the pair.
//!
//! Deleting a namespace deletes the veth end inside it (and so the pair), any qdisc or tc filter
//! on it, and its sockets' routes; processes inside keep running, so stop them first
//! ([`crate::ChildGuard`] drops before the namespaces when declared after them).
//!
//! Namespaces are named `km-<tag>-<pid>-<n>`. If a test process dies without unwinding (SIGKILL,
//! a timeout), its namespaces stay behind; the next [`Netns::create`] removes every `km-*`
//! namespace whose pid is no longer alive.

use std::ffi::OsStr;
use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Command, Output};

use nix::sched::{setns, CloneFlags};

const PREFIX: &str = "km";
const NETNS_DIR: &str = "/run/netns";

/// Failures while setting up or using a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("opening namespace {name}: {source}")]
    Open {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("entering namespace {name}: {source}")]
    Enter {
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error("the code run inside namespace {0} panicked")]
    Panicked(String),
}

/// Runs `command` to completion; an unsuccessful exit is an error carrying its stderr.
pub fn run_checked(command: &mut Command) -> Result<Output, NetnsError> {
    let text = format!("{command:?}");
    let output = command.output().map_err(|source| NetnsError::Spawn {
        command: text.clone(),
        source,
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(NetnsError::CommandFailed {
            command: text,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// One network namespace, deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `km-<tag>-<pid>-<n>` with its loopback up, after sweeping namespaces left by dead
    /// test processes.
    pub fn create(tag: &str) -> Result<Self, NetnsError> {
        sweep_stale_namespaces();
        let name = crate::unique_name(&format!("{PREFIX}-{tag}"));
        run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        let netns = Netns { name };
        netns.run("ip", ["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`: the handle `setns(2)` and `ip netns exec` use.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec <name> <program>`;
    /// `ip` execs the program, so the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `program args...` inside the namespace to completion; returns its stdout.
    pub fn run<I, S>(&self, program: &str, args: I) -> Result<String, NetnsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = run_checked(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs `f` on a fresh thread that has entered the namespace, and returns its result.
    /// Sockets opened by `f` belong to the namespace and may be returned and used from any
    /// thread afterwards. The calling thread's namespace is untouched.
    pub fn enter<R, F>(&self, f: F) -> Result<R, NetnsError>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = File::open(self.path()).map_err(|source| NetnsError::Open {
            name: self.name.clone(),
            source,
        })?;
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
                    name: self.name.clone(),
                    source,
                })?;
                Ok(f())
            });
            thread
                .join()
                .map_err(|_| NetnsError::Panicked(self.name.clone()))?
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run_checked(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!(
                "keymash-tests: could not delete namespace {}: {e}",
                self.name
            );
        }
    }
}

/// Deletes `km-*-<pid>-<n>` namespaces whose creating process is gone.
fn sweep_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&format!("{PREFIX}-")) {
            continue;
        }
        let mut parts = name.rsplit('-');
        let (Some(_n), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            let _ = run_checked(Command::new("ip").args(["netns", "del", &name]));
        }
    }
}

/// Two namespaces joined by a veth pair, both ends up, with IPv4 and IPv6 addresses.
///
/// Fields drop in declaration order: nothing here outlives the namespaces.
#[derive(Debug)]
pub struct NetnsPair {
    /// The sending side (the sender PC).
    pub left: Netns,
    /// The receiving side (the receiver PC, where the loss filter sits).
    pub right: Netns,
}

impl NetnsPair {
    /// Interface name of the veth end in `left`.
    pub const LEFT_INTERFACE: &'static str = "km-left";
    /// Interface name of the veth end in `right`.
    pub const RIGHT_INTERFACE: &'static str = "km-right";
    pub const LEFT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    pub const RIGHT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    pub const LEFT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
    pub const RIGHT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);

    /// Creates both namespaces and the veth pair. On any failure, whatever was created is
    /// removed again (the guards drop).
    pub fn create(tag: &str) -> Result<Self, NetnsError> {
        let left = Netns::create(&format!("{tag}-l"))?;
        let right = Netns::create(&format!("{tag}-r"))?;
        // Created directly inside `left` with its peer inside `right`: the fixed interface
        // names never appear in the root namespace, so parallel pairs cannot collide.
        left.run(
            "ip",
            [
                "link",
                "add",
                Self::LEFT_INTERFACE,
                "type",
                "veth",
                "peer",
                "name",
                Self::RIGHT_INTERFACE,
                "netns",
                right.name(),
            ],
        )?;
        for (ns, interface, v4, v6) in [
            (&left, Self::LEFT_INTERFACE, Self::LEFT_V4, Self::LEFT_V6),
            (
                &right,
                Self::RIGHT_INTERFACE,
                Self::RIGHT_V4,
                Self::RIGHT_V6,
            ),
        ] {
            ns.run("ip", ["addr", "add", &format!("{v4}/24"), "dev", interface])?;
            // nodad: the address is usable at once instead of after duplicate detection.
            ns.run(
                "ip",
                [
                    "-6",
                    "addr",
                    "add",
                    &format!("{v6}/64"),
                    "dev",
                    interface,
                    "nodad",
                ],
            )?;
            ns.run("ip", ["link", "set", interface, "up"])?;
        }
        Ok(NetnsPair { left, right })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_between_calls() {
        assert_ne!(crate::unique_name("x"), crate::unique_name("x"));
    }

    #[test]
    fn stale_sweep_parses_pid_from_names_without_touching_others() {
        // Only checks the naming convention the sweep relies on.
        let name = crate::unique_name(&format!("{PREFIX}-demo-l"));
        let mut parts = name.rsplit('-');
        parts.next();
        assert_eq!(
            parts.next().and_then(|p| p.parse::<u32>().ok()),
            Some(std::process::id())
        );
    }
}
