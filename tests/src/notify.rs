//! A stand-in for systemd's notify socket: a service under test started with
//! [`NotifySocket::env`] sends its `READY=1` / `STATUS=` / `WATCHDOG=1` datagrams here, and the
//! test waits for readiness instead of sleeping and hoping.
//!
//! Like systemd, it reads the socket for as long as it exists: a unix datagram socket nobody
//! reads holds only `net.unix.max_dgram_qlen` messages (10 by default), after which a service's
//! next `sd_notify` blocks and the whole service freezes. A thread drains it into a list.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A bound datagram socket in the temp directory, drained by a thread, removed on drop.
#[derive(Debug)]
pub struct NotifySocket {
    path: PathBuf,
    messages: Arc<(Mutex<Vec<String>>, Condvar)>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
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
        // The timeout only bounds how long the reader takes to notice `stop`.
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(io)?;
        let messages: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (messages, stop) = (Arc::clone(&messages), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = socket.recv(&mut buf) {
                        let (list, arrived) = &*messages;
                        if let Ok(mut list) = list.lock() {
                            list.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                            arrived.notify_all();
                        }
                    }
                }
            })
        };
        Ok(NotifySocket {
            path,
            messages,
            stop,
            reader: Some(reader),
        })
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

    /// Every message received so far.
    pub fn messages(&self) -> Vec<String> {
        self.messages
            .0
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Waits until a datagram containing `READY=1` has arrived; returns all messages seen.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Vec<String>, NotifyError> {
        let deadline = Instant::now() + timeout;
        let (list, arrived) = &*self.messages;
        let mut guard = list
            .lock()
            .map_err(|_| NotifyError::NotReady(timeout, Vec::new()))?;
        loop {
            if guard.iter().any(|m| m.lines().any(|l| l == "READY=1")) {
                return Ok(guard.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NotifyError::NotReady(timeout, guard.clone()));
            }
            guard = match arrived.wait_timeout(guard, left) {
                Ok((g, _)) => g,
                Err(_) => return Err(NotifyError::NotReady(timeout, Vec::new())),
            };
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
