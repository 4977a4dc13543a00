//! `keymash check-config` accepts the shipped example and refuses bad files, naming the key, and
//! a protected configuration whose key file is missing, unreadable or not a key.

// Tests may unwrap (Cargo.toml's lint note); clippy.toml's allow-unwrap-in-tests covers only
// #[test] functions, not this file's helpers.
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output};

fn check(text: &str) -> (Option<i32>, String, String) {
    let dir = std::env::temp_dir().join(format!("keymash-check-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!(
        "{:x}.toml",
        text.len() * 31 + text.bytes().map(usize::from).sum::<usize>()
    ));
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keymash"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A directory of the test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("keymash-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn keymash(args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keymash"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_shipped_example_passes() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/keymash.toml");
    // Its key file is /etc/keymash/keymash.key, which install.sh creates after this check.
    let out = keymash(&[
        "check-config".as_ref(),
        "--no-key".as_ref(),
        example.as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    // With a key where it says, the example passes as it is.
    let dir = TempDir::new("check-config-example");
    let key = dir.0.join("keymash.key");
    assert!(
        keymash(&["keygen".as_ref(), "--output".as_ref(), key.as_os_str()])
            .status
            .success()
    );
    let text = std::fs::read_to_string(example).unwrap().replace(
        "key_file = \"/etc/keymash/keymash.key\"",
        &format!("key_file = \"{}\"", key.display()),
    );
    let file = dir.0.join("keymash.toml");
    std::fs::write(&file, text).unwrap();
    let out = keymash(&["check-config".as_ref(), file.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `security.mode = "psk"` needs its key file: one that is missing, cannot be read or is not a
/// key is refused, naming the file and how to make one; `mode = "none"` needs none.
#[test]
fn a_protected_configuration_without_a_usable_key_file_is_refused() {
    let dir = TempDir::new("check-config-key");
    let missing = dir.0.join("missing.key");
    let unreadable = dir.0.join("a-directory.key");
    std::fs::create_dir(&unreadable).unwrap();
    let malformed = dir.0.join("malformed.key");
    std::fs::write(&malformed, "0123\n").unwrap();
    let file = dir.0.join("keymash.toml");
    for key in [&missing, &unreadable, &malformed] {
        std::fs::write(
            &file,
            format!(
                "[security]\nmode = \"psk\"\nkey_file = \"{}\"\n",
                key.display()
            ),
        )
        .unwrap();
        let out = keymash(&["check-config".as_ref(), file.as_os_str()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{}: {stderr}", key.display());
        for needed in [
            &key.display().to_string()[..],
            "security.key_file",
            "keymash keygen",
        ] {
            assert!(
                stderr.contains(needed),
                "{}: the error does not say {needed:?}: {stderr}",
                key.display()
            );
        }
        // Everything but the key is fine.
        let out = keymash(&[
            "check-config".as_ref(),
            "--no-key".as_ref(),
            file.as_os_str(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // What the message says to do makes the configuration pass.
    std::fs::write(
        &file,
        format!("[security]\nkey_file = \"{}\"\n", missing.display()),
    )
    .unwrap();
    assert!(
        keymash(&["keygen".as_ref(), "--output".as_ref(), missing.as_os_str()])
            .status
            .success()
    );
    let out = keymash(&["check-config".as_ref(), file.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An unprotected link reads no key file.
    std::fs::write(
        &file,
        format!(
            "[security]\nmode = \"none\"\nkey_file = \"{}\"\n",
            dir.0.join("none.key").display()
        ),
    )
    .unwrap();
    let out = keymash(&["check-config".as_ref(), file.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_files_exit_non_zero_and_name_the_key() {
    let table = [
        ("[codec]\nqualty = 3\n", "codec.qualty"),
        ("[video]\nwidth = 650\n", "video.width"),
        ("[loss]\ndrop_at_rest = 2.0\n", "loss.drop_at_rest"),
        ("[transport]\nnack = \"yes\"\n", "transport.nack"),
    ];
    for (text, key) in table {
        let (code, _, stderr) = check(text);
        assert_eq!(code, Some(78), "{text:?}: {stderr}");
        assert!(
            stderr.contains(key),
            "{text:?}: stderr does not name {key}: {stderr}"
        );
    }
}

#[test]
fn a_missing_file_exits_non_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_keymash"))
        .args(["check-config", "/nonexistent/keymash.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
