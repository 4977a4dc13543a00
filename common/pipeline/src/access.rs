//! Who may open a file, and what to tell the operator when this process may not: a segment in
//! `/dev/shm` (group `keymash`), a keyboard under `/dev/input` (group `input`), a camera
//! (group `video`). A "permission denied" alone leaves an installer guessing; the message names
//! the file's owner, group and mode, the user this process runs as, and the group to join.
//!
//! The facts are read with plain `std` (file metadata, `/proc/self/status`, `/etc/passwd`,
//! `/etc/group`); the message is built from them by [`denied_advice`], a pure function.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// Owner, group and mode of a file, with names where the account databases have them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAccess {
    pub uid: u32,
    pub gid: u32,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Permission bits (`0o7777`).
    pub mode: u32,
}

impl FileAccess {
    /// The facts of `path`, or `None` if it cannot even be stat'ed.
    pub fn of(path: &Path) -> Option<FileAccess> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileAccess {
            uid: meta.uid(),
            gid: meta.gid(),
            owner: account_name("/etc/passwd", meta.uid()),
            group: account_name("/etc/group", meta.gid()),
            mode: meta.mode() & 0o7777,
        })
    }

    /// The group's name, or its number when it has none.
    pub fn group_name(&self) -> String {
        self.group.clone().unwrap_or_else(|| self.gid.to_string())
    }

    fn owner_name(&self) -> String {
        self.owner.clone().unwrap_or_else(|| self.uid.to_string())
    }
}

/// The user this process runs as: effective uid, its name, and every group it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessUser {
    pub uid: u32,
    pub name: Option<String>,
    /// Effective gid and supplementary groups.
    pub gids: Vec<u32>,
}

impl ProcessUser {
    /// This process's user, from `/proc/self/status` (`None` where that is not readable).
    pub fn current() -> Option<ProcessUser> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let (uid, gids) = parse_proc_status(&status)?;
        Some(ProcessUser {
            uid,
            name: account_name("/etc/passwd", uid),
            gids,
        })
    }

    fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.uid.to_string())
    }
}

/// The effective uid and the groups (effective gid and supplementary) of a `/proc/PID/status`
/// text.
fn parse_proc_status(status: &str) -> Option<(u32, Vec<u32>)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|w| w.parse::<u32>().ok())
                    .collect::<Vec<_>>()
            })
    };
    // "Uid:" and "Gid:" list real, effective, saved and filesystem ids.
    let uid = *field("Uid:")?.get(1)?;
    let mut gids = vec![*field("Gid:")?.get(1)?];
    gids.extend(field("Groups:").unwrap_or_default());
    Some((uid, gids))
}

/// The name of `id` in an account database (`/etc/passwd` or `/etc/group`: `name:x:id:...`).
fn account_name(database: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(database).ok()?;
    name_in_database(&text, id)
}

fn name_in_database(text: &str, id: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let found = fields.nth(1)?.parse::<u32>().ok()?;
        (found == id && !name.is_empty()).then(|| name.to_owned())
    })
}

/// What to say when this process may not open `what` (`path`): its owner, group and mode, who
/// this process runs as and what to do. `usual_group` is the group such files normally belong
/// to (`keymash` for segments, `input` for keyboards), named when the file's own group cannot
/// be read or when joining the file's group would not help (the file is not group-readable).
pub fn denied_advice(
    what: &str,
    path: &Path,
    access: Option<&FileAccess>,
    user: Option<&ProcessUser>,
    usual_group: &str,
) -> String {
    let who = user.map_or_else(
        || "this service's user".to_owned(),
        |u| format!("user {} (uid {})", u.display_name(), u.uid),
    );
    let Some(access) = access else {
        return format!(
            "cannot open {what} {}: permission denied for {who}; run it as a user in group \
             `{usual_group}` (`usermod -aG {usual_group} USER`, then log in again)",
            path.display()
        );
    };
    let group = access.group_name();
    let facts = format!(
        "{what} {} (owner {}, group {group}, mode {:04o})",
        path.display(),
        access.owner_name(),
        access.mode
    );
    let user_name = user.map_or_else(|| "USER".to_owned(), ProcessUser::display_name);
    if access.mode & 0o040 == 0 {
        // Only the owner may read it: no group membership helps.
        return format!(
            "cannot open {facts}: permission denied for {who}; only its owner may read it: run \
             this service as {} or have the file made readable by group `{usual_group}`",
            access.owner_name()
        );
    }
    let in_group = user.is_some_and(|u| u.gids.contains(&access.gid));
    if in_group {
        format!(
            "cannot open {facts}: permission denied for {who}, although in group `{group}` (a \
             security module or mount option refuses it?)"
        )
    } else {
        format!(
            "cannot open {facts}: permission denied: {who} is not in group `{group}`; add it \
             (`usermod -aG {group} {user_name}`, then log in again) or run this service as a \
             member of `{group}`"
        )
    }
}

/// The short form of [`denied_advice`] for a status line (128 bytes in a statistics cell):
/// `what` (the file, as short as it can be named) and the one thing to do.
pub fn denied_short(
    what: &str,
    access: Option<&FileAccess>,
    user: Option<&ProcessUser>,
    usual_group: &str,
) -> String {
    match access {
        None => format!("cannot open {what}: permission denied, join group `{usual_group}`"),
        Some(a) if a.mode & 0o040 == 0 => format!(
            "cannot open {what}: permission denied, only {} may read it",
            a.owner_name()
        ),
        Some(a) if user.is_some_and(|u| u.gids.contains(&a.gid)) => {
            format!("cannot open {what}: permission denied (see the log)")
        }
        Some(a) => format!(
            "cannot open {what}: permission denied, join group `{}`",
            a.group_name()
        ),
    }
}

/// [`denied_advice`] with the facts read now.
pub fn denied_advice_now(what: &str, path: &Path, usual_group: &str) -> String {
    denied_advice(
        what,
        path,
        FileAccess::of(path).as_ref(),
        ProcessUser::current().as_ref(),
        usual_group,
    )
}

/// Files a service keeps trying to open (every keyboard under `/dev/input`, say), and why
/// the ones it cannot open fail: each distinct failure of a file is to be logged once, not at
/// every retry, and the status line leads with them. Sans-IO: fed the outcome of each attempt.
#[derive(Debug, Clone, Default)]
pub struct OpenProblems {
    /// File (its path as shown) to (short form for the status line, full text as logged).
    failing: std::collections::BTreeMap<String, (String, String)>,
}

impl OpenProblems {
    /// Opening `file` failed with `text` (short form `short`): the text to log at warn if it is
    /// news (a new file or a different failure), else `None`.
    pub fn failed(&mut self, file: &str, short: String, text: String) -> Option<String> {
        let news = self.failing.get(file).is_none_or(|(_, old)| *old != text);
        self.failing.insert(file.to_owned(), (short, text.clone()));
        news.then_some(text)
    }

    /// `file` was opened (or is gone): its failure, if any, is over; true if it had one.
    pub fn cleared(&mut self, file: &str) -> bool {
        self.failing.remove(file).is_some()
    }

    /// Forgets every file not in `present` (unplugged devices).
    pub fn retain(&mut self, present: &std::collections::BTreeSet<String>) {
        self.failing.retain(|file, _| present.contains(file));
    }

    pub fn count(&self) -> usize {
        self.failing.len()
    }

    /// The status line's lead: the first failure in short, and how many more there are.
    pub fn summary(&self) -> Option<String> {
        let (short, _) = self.failing.values().next()?;
        Some(match self.failing.len() {
            1 => short.clone(),
            n => format!("{short} (and {} more)", n - 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment() -> FileAccess {
        FileAccess {
            uid: 990,
            gid: 990,
            owner: Some("keymash".to_owned()),
            group: Some("keymash".to_owned()),
            mode: 0o660,
        }
    }

    fn desktop_user(gids: Vec<u32>) -> ProcessUser {
        ProcessUser {
            uid: 1000,
            name: Some("alice".to_owned()),
            gids,
        }
    }

    #[test]
    fn a_user_outside_the_group_is_told_which_group_to_join() {
        let path = Path::new("/dev/shm/keymash.received");
        let text = denied_advice(
            "segment",
            path,
            Some(&segment()),
            Some(&desktop_user(vec![1000, 27])),
            "keymash",
        );
        for needed in [
            "/dev/shm/keymash.received",
            "owner keymash",
            "group keymash",
            "mode 0660",
            "user alice (uid 1000) is not in group `keymash`",
            "usermod -aG keymash alice",
            "log in again",
        ] {
            assert!(text.contains(needed), "{needed:?} missing in: {text}");
        }
    }

    #[test]
    fn the_group_named_is_the_files_own_not_the_usual_one() {
        let mut access = segment();
        access.group = Some("exhibit".to_owned());
        let text = denied_advice(
            "keyboard",
            Path::new("/dev/input/event3"),
            Some(&access),
            None,
            "input",
        );
        assert!(text.contains("not in group `exhibit`"), "{text}");
        assert!(text.contains("usermod -aG exhibit USER"), "{text}");
    }

    #[test]
    fn an_owner_only_file_or_unknown_facts_say_so() {
        let mut access = segment();
        access.mode = 0o600;
        let text = denied_advice(
            "segment",
            Path::new("/dev/shm/x"),
            Some(&access),
            Some(&desktop_user(vec![990])),
            "keymash",
        );
        assert!(text.contains("only its owner may read it"), "{text}");
        let text = denied_advice("segment", Path::new("/dev/shm/x"), None, None, "keymash");
        assert!(text.contains("group `keymash`"), "{text}");
        // A member of the group who is still refused is not told to join it.
        let text = denied_advice(
            "segment",
            Path::new("/dev/shm/x"),
            Some(&segment()),
            Some(&desktop_user(vec![1000, 990])),
            "keymash",
        );
        assert!(!text.contains("usermod"), "{text}");
        assert!(text.contains("although in group `keymash`"), "{text}");
        let short = denied_short(
            "x",
            Some(&segment()),
            Some(&desktop_user(vec![1000])),
            "input",
        );
        assert_eq!(
            short,
            "cannot open x: permission denied, join group `keymash`"
        );
    }

    #[test]
    fn account_databases_and_proc_status_are_parsed() {
        let group = "root:x:0:\nkeymash:x:990:alice,bob\nbroken\n";
        assert_eq!(name_in_database(group, 990).as_deref(), Some("keymash"));
        assert_eq!(name_in_database(group, 5), None);
        let status = "Name:\tx\nUid:\t1000\t1001\t1001\t1001\nGid:\t100\t990\t990\t990\n\
                      Groups:\t27 990 \n";
        assert_eq!(parse_proc_status(status), Some((1001, vec![990, 27, 990])));
        assert!(ProcessUser::current().is_some());
    }

    #[test]
    fn each_failing_file_is_logged_once_per_distinct_failure() {
        let mut problems = OpenProblems::default();
        assert_eq!(problems.summary(), None);
        let fail = |p: &mut OpenProblems, file: &str, why: &str| {
            p.failed(
                file,
                format!("{file}: {why}"),
                format!("cannot open {file}: {why}"),
            )
        };
        assert!(fail(&mut problems, "/dev/input/event3", "denied").is_some());
        assert!(fail(&mut problems, "/dev/input/event3", "denied").is_none());
        assert!(fail(&mut problems, "/dev/input/event5", "denied").is_some());
        assert_eq!(
            problems.summary().as_deref(),
            Some("/dev/input/event3: denied (and 1 more)")
        );
        // Another failure of the same file is news.
        assert!(fail(&mut problems, "/dev/input/event3", "I/O error").is_some());
        assert!(problems.cleared("/dev/input/event3"));
        let present = ["/dev/input/event9".to_owned()].into_iter().collect();
        problems.retain(&present);
        assert_eq!(problems.count(), 0);
        // Failing again after it was opened once is news again.
        assert!(fail(&mut problems, "/dev/input/event3", "I/O error").is_some());
    }
}
