//! Compiles the eBPF loss filter (ebpf/keymash_loss.bpf.c) with clang into OUT_DIR, where
//! src/filter.rs embeds it. The object is a build product and is never committed.
//!
//! Environment: `KEYMASH_CLANG` names the clang to use (default `clang` on PATH).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const SOURCE: &str = "keymash_loss.bpf.c";
const HEADER: &str = "keymash_loss.h";
const OBJECT: &str = "keymash_loss.bpf.o";

fn main() -> ExitCode {
    match build() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: building the eBPF loss filter failed: {message}");
            ExitCode::FAILURE
        }
    }
}

fn build() -> Result<(), String> {
    let manifest_dir =
        env::var("CARGO_MANIFEST_DIR").map_err(|e| format!("CARGO_MANIFEST_DIR: {e}"))?;
    let out_dir = env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?;
    let ebpf_dir = Path::new(&manifest_dir).join("../../ebpf");
    let source = ebpf_dir.join(SOURCE);
    let header = ebpf_dir.join(HEADER);
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-env-changed=KEYMASH_CLANG");

    let clang = env::var("KEYMASH_CLANG").unwrap_or_else(|_| "clang".to_owned());
    let object = PathBuf::from(out_dir).join(OBJECT);

    let mut command = Command::new(&clang);
    command.args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"]);
    // <linux/bpf.h> includes <asm/types.h>, which Debian keeps under the multiarch directory;
    // `-target bpf` does not search it by itself.
    if let Some(dir) = multiarch_include_dir(&clang) {
        command.arg("-I").arg(dir);
    }
    command
        .arg("-I")
        .arg(&ebpf_dir)
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&object);

    let status = command.status().map_err(|e| {
        format!(
            "could not run `{clang}` ({e}). clang is needed to compile {SOURCE}: \
             install it (Debian: `apt-get install clang libbpf-dev`) or set KEYMASH_CLANG"
        )
    })?;
    if !status.success() {
        return Err(format!(
            "`{clang}` failed on {} ({status}); see its messages above",
            source.display()
        ));
    }
    Ok(())
}

/// `/usr/include/<multiarch>` when clang reports a multiarch triple and that directory exists.
fn multiarch_include_dir(clang: &str) -> Option<PathBuf> {
    let output = Command::new(clang).arg("-print-multiarch").output().ok()?;
    let triple = String::from_utf8(output.stdout).ok()?;
    let dir = Path::new("/usr/include").join(triple.trim());
    (!triple.trim().is_empty() && dir.is_dir()).then_some(dir)
}
