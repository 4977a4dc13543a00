//! `keymash keygen [--output FILE] [--force]`: write a new pre-shared key file.
//!
//! 32 bytes from the OS random source, as 64 hex digits (see `keymash_core::key`), into a file
//! created with mode 0640 and, when run as root and the `keymash` group exists, owned by
//! root:keymash, so the services (user keymash) can read it and nobody else can. An existing
//! file is never overwritten without `--force`: the other PC holds a copy of it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use keymash_core::config::DEFAULT_KEY_PATH;
use keymash_core::key::PreSharedKey;

/// The group that may read the key (the services' group).
const KEY_GROUP: &str = "keymash";

#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the key (the configuration's `security.key_file`).
    #[arg(long, short, value_name = "FILE", default_value = DEFAULT_KEY_PATH)]
    output: PathBuf,
    /// Replace an existing key file (the other PC then needs the new one too).
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let path = &args.output;
    if path.exists() && !args.force {
        bail!(
            "{} exists already; both PCs must hold the same key, so it is kept (--force replaces it)",
            path.display()
        );
    }
    let key = PreSharedKey::from_bytes(keymash_service::random::bytes()?);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Written beside the target and renamed over it, so a crash never leaves half a key.
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(key.to_file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640))?;
    if nix::unistd::geteuid().is_root() {
        if let Ok(Some(group)) = nix::unistd::Group::from_name(KEY_GROUP) {
            nix::unistd::chown(&tmp, Some(nix::unistd::Uid::from_raw(0)), Some(group.gid))
                .with_context(|| format!("chown root:{KEY_GROUP} {}", tmp.display()))?;
        }
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    println!(
        "wrote a new key to {} (fingerprint {}); copy it to the other PC, e.g. scp {} OTHER-PC:{}",
        path.display(),
        keymash_transport::security::key_fingerprint(&key),
        path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
