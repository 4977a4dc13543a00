//! A stand-in for systemd's notify socket: a service under test started with
//! [`NotifySocket::env`] sends its `READY=1` / `STATUS=` datagrams here, and the test waits for
//! readiness instead of sleeping and hoping.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A bound datagram socket in the temp directory, removed on drop.
#[derive(Debug)]
pub struct NotifySocket {
    path: PathBuf,
    socket: UnixDatagram,
}

/// Waiting for a notification failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify socket {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no READY=1 within {0:?} (messages seen: {1:?})")]
    NotReady(Duration, Vec<String>),
}

impl NotifySocket {
    pub fn bind() -> Result<Self, NotifyError> {
        let path =
            std::env::temp_dir().join(format!("{}.notify", crate::unique_name("keymash-test")));
        let io = |source| NotifyError::Io {
            path: path.display().to_string(),
            source,
        };
        let socket = UnixDatagram::bind(&path).map_err(io)?;
        Ok(NotifySocket { path, socket })
    }

    /// Lets services running as other (unprivileged) users send to the socket: connecting to a
    /// unix socket needs write permission on its file.
    pub fn allow_any_user(&self) -> Result<(), NotifyError> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o777)).map_err(
            |source| NotifyError::Io {
                path: self.path.display().to_string(),
                source,
            },
        )
    }

    /// The environment variable to give the service: `("NOTIFY_SOCKET", path)`.
    pub fn env(&self) -> (&'static str, PathBuf) {
        ("NOTIFY_SOCKET", self.path.clone())
    }

    /// Waits until a datagram containing `READY=1` arrives; returns all messages seen.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Vec<String>, NotifyError> {
        let io = |source| NotifyError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let started = Instant::now();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(NotifyError::NotReady(timeout, seen));
            }
            self.socket.set_read_timeout(Some(left)).map_err(io)?;
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let ready = message.lines().any(|l| l == "READY=1");
                    seen.push(message);
                    if ready {
                        return Ok(seen);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(io(e)),
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
