//! Segments are 0600 (or 0660 when asked) and owned by the running user, whatever the umask.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use keymash_shm::{OpenError, Permissions, RingGeometry, RingWriter};
use support::{peer, ShmScope, PATIENCE};

#[test]
fn segments_get_exactly_the_requested_mode_under_any_umask() {
    let scope = ShmScope::new("perm");
    let cases: &[(&str, &str, bool, u32)] = &[
        ("open-umask", "0", false, 0o600),
        ("tight-umask", "077", false, 0o600),
        ("group-open-umask", "0", true, 0o660),
        ("group-tight-umask", "077", true, 0o660),
    ];
    let euid = nix::unistd::geteuid().as_raw();
    for &(name, umask, group, mode) in cases {
        let mut args = vec!["--slot-size", "64", "--slots", "2", "--umask", umask];
        if group {
            args.push("--group");
        }
        let mut writer = peer(&scope, "write", name, &args);
        writer.expect("DONE", PATIENCE);
        let meta = std::fs::metadata(scope.id(name).path()).unwrap();
        assert_eq!(
            meta.mode() & 0o7777,
            mode,
            "{name}: umask {umask}, group {group}"
        );
        assert_eq!(meta.uid(), euid, "{name}: owned by the running user");
    }
}

#[test]
fn a_writer_refuses_to_attach_to_a_world_accessible_segment() {
    let scope = ShmScope::new("worldrw");
    let id = scope.id("frames");
    let geometry = RingGeometry::new(64, 2).unwrap();
    drop(RingWriter::open(&id, geometry, Permissions::OwnerOnly).unwrap());
    std::fs::set_permissions(id.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(matches!(
        RingWriter::open(&id, geometry, Permissions::OwnerOnly),
        Err(OpenError::InsecurePermissions { mode: 0o666, .. })
    ));
}
