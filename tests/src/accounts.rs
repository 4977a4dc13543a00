//! Throwaway accounts for tests that run a service as a user outside some group: a system group
//! created for one test and deleted when its guard drops, also when the test fails.

use std::process::{Command, ExitStatus, Stdio};

/// A system group that exists for one test only (`groupadd --system`), deleted on drop.
#[derive(Debug)]
pub struct ThrowawayGroup {
    pub name: String,
}

impl ThrowawayGroup {
    /// Creates `<stem><pid>` (at most 32 characters, as `groupadd` wants: keep `stem` short).
    pub fn create(stem: &str) -> ThrowawayGroup {
        crate::require_root();
        let name = format!("{stem}{}", std::process::id());
        // Left over by a run that was killed before its guard ran.
        let _ = groupdel(&name);
        let status = Command::new("groupadd")
            .args(["--system", &name])
            .status()
            .expect("run groupadd");
        assert!(status.success(), "groupadd --system {name} failed");
        ThrowawayGroup { name }
    }
}

impl Drop for ThrowawayGroup {
    fn drop(&mut self) {
        match groupdel(&self.name) {
            Ok(status) if status.success() => {}
            other => eprintln!("could not delete the test group {}: {other:?}", self.name),
        }
    }
}

fn groupdel(name: &str) -> std::io::Result<ExitStatus> {
    Command::new("groupdel")
        .arg(name)
        .stderr(Stdio::null())
        .status()
}
