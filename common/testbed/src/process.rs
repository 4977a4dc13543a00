//! A child process that cannot outlive its test.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Failures while running a child under a guard.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("could not start {name}: {source}")]
    Spawn {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sending {signal} to {name}: {source}")]
    Signal {
        name: String,
        signal: Signal,
        source: nix::Error,
    },
    #[error("waiting for {name}: {source}")]
    Wait {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} did not exit within {timeout:?} of SIGTERM (killed it)")]
    DidNotStop { name: String, timeout: Duration },
}

/// A running child that is killed (SIGKILL) and reaped when the guard drops, so a failing test
/// never leaves a service running.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    exited: Option<ExitStatus>,
}

impl ChildGuard {
    /// Starts `command`; `name` is used in messages.
    pub fn spawn(name: &str, command: &mut Command) -> Result<Self, ProcessError> {
        let child = command.spawn().map_err(|source| ProcessError::Spawn {
            name: name.to_owned(),
            source,
        })?;
        Ok(ChildGuard {
            name: name.to_owned(),
            child,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The underlying child (to take its stdout/stderr pipes).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Its exit status, if it has exited (does not block).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().map_err(|source| ProcessError::Wait {
                name: self.name.clone(),
                source,
            })?;
        }
        Ok(self.exited)
    }

    fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        kill(pid, signal).map_err(|source| ProcessError::Signal {
            name: self.name.clone(),
            signal,
            source,
        })
    }

    /// SIGKILL (a crash, as far as the child can tell) and reap.
    pub fn kill_hard(&mut self) -> Result<ExitStatus, ProcessError> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.signal(Signal::SIGKILL)?;
        let status = self.child.wait().map_err(|source| ProcessError::Wait {
            name: self.name.clone(),
            source,
        })?;
        self.exited = Some(status);
        Ok(status)
    }

    /// SIGTERM and wait up to `timeout` for a clean exit; SIGKILL and an error if it does not come.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, ProcessError> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.signal(Signal::SIGTERM)?;
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill_hard()?;
        Err(ProcessError::DidNotStop {
            name: self.name.clone(),
            timeout,
        })
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Err(e) = self.kill_hard() {
            eprintln!("keymash-tests: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_guard_kills_the_child() {
        let guard = ChildGuard::spawn("sleep", Command::new("sleep").arg("60")).unwrap();
        let pid = Pid::from_raw(guard.pid() as i32);
        drop(guard);
        assert!(
            kill(pid, None).is_err(),
            "child still exists after the guard dropped"
        );
    }

    #[test]
    fn terminate_reports_a_clean_exit_on_sigterm() {
        let mut guard = ChildGuard::spawn("sleep", Command::new("sleep").arg("60")).unwrap();
        let status = guard.terminate(Duration::from_secs(5)).unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
    }

    #[test]
    fn terminate_kills_a_child_that_ignores_sigterm() {
        let mut command = Command::new("sh");
        command.args(["-c", "trap '' TERM; sleep 60 & wait; sleep 60"]);
        let mut guard = ChildGuard::spawn("stubborn", &mut command).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let err = guard.terminate(Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, ProcessError::DidNotStop { .. }), "{err}");
        assert!(guard.try_wait().unwrap().is_some());
    }
}
