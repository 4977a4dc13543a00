//! `keymash check-config` accepts the shipped example and refuses bad files, naming the key.

// Tests may unwrap (Cargo.toml's lint note); clippy.toml's allow-unwrap-in-tests covers only
// #[test] functions, not this file's helpers.
#![allow(clippy::unwrap_used)]

use std::process::Command;

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

#[test]
fn the_shipped_example_passes() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/keymash.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_keymash"))
        .args(["check-config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
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
