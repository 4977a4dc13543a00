//! Shared support for keymash-shm's integration tests: unique prefixes whose segments are removed
//! even when a test fails, and helper processes (`shm-test-peer`) that are killed on drop.
// Each test file uses a different part of this module, and failing loudly is what test support
// is for (clippy exempts #[test] functions from unwrap_used, not their helpers).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use keymash_shm::{remove_segments, Prefix, SegmentId, SegmentName};

/// A prefix no other test (in this or another process) uses; its segments are removed on drop.
pub(crate) struct ShmScope {
    pub prefix: Prefix,
}

impl ShmScope {
    pub(crate) fn new(tag: &str) -> ShmScope {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag: String = tag
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect();
        let prefix = format!(
            "kmt{}{}x{}",
            tag,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let scope = ShmScope {
            prefix: Prefix::new(&prefix).unwrap(),
        };
        // A previous run killed before its guards ran could have left this exact prefix behind.
        remove_segments(&scope.prefix).unwrap();
        scope
    }

    pub(crate) fn id(&self, name: &str) -> SegmentId {
        SegmentId::new(self.prefix.clone(), SegmentName::new(name).unwrap())
    }
}

impl Drop for ShmScope {
    fn drop(&mut self) {
        let _ = remove_segments(&self.prefix);
    }
}

/// One `WORD key=value ...` line from a peer.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    pub line: String,
    values: HashMap<String, String>,
}

impl Fields {
    pub(crate) fn get(&self, key: &str) -> &str {
        self.values
            .get(key)
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.line))
    }

    pub(crate) fn u64(&self, key: &str) -> u64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|e| panic!("{key}= in {:?}: {e}", self.line))
    }
}

/// A running `shm-test-peer` process; killed (SIGKILL) and reaped on drop.
pub(crate) struct Peer {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Peer {
    pub(crate) fn spawn(args: &[&str]) -> Peer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shm-test-peer"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start shm-test-peer");
        let stdout = child.stdout.take().expect("peer stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the next line starting with `word`; fails the test on `ERROR`, exit or timeout.
    pub(crate) fn expect(&mut self, word: &str, timeout: Duration) -> Fields {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with("ERROR") {
                        panic!("peer failed: {line}");
                    }
                    if line.split_whitespace().next() == Some(word) {
                        let values = line
                            .split_whitespace()
                            .skip(1)
                            .filter_map(|pair| pair.split_once('='))
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect();
                        return Fields { line, values };
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {word} line within {timeout:?}; saw {:?}", self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "peer exited before {word}; saw {:?}, status {:?}",
                        self.seen,
                        self.child.wait()
                    )
                }
            }
        }
    }

    /// SIGKILL, as a crash or `systemctl kill -s KILL` would.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a clean exit.
    pub(crate) fn wait_success(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "peer exited with {status}; saw {:?}",
                    self.seen
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "peer still running after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Generous bound for anything a helper process should manage on a loaded 2-core CI machine.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// Starts `shm-test-peer <command> --prefix <scope> --name <name> <extra...>`.
pub(crate) fn peer(scope: &ShmScope, command: &str, name: &str, extra: &[&str]) -> Peer {
    let prefix = scope.prefix.to_string();
    let mut args = vec![command, "--prefix", prefix.as_str(), "--name", name];
    args.extend_from_slice(extra);
    Peer::spawn(&args)
}
