//! Segment names: `/dev/shm/<prefix>.<name>`.
//!
//! Every open and create takes a [`Prefix`], so tests, the demo and a real installation can run
//! isolated sets of segments side by side on one machine. The prefix may not contain a dot, so
//! `<prefix>.<name>` splits unambiguously at the first dot when `keymash status` scans
//! `/dev/shm`.

use std::fmt;

/// Where POSIX shared memory objects appear as files on Linux (glibc maps `shm_open("/x")` to
/// `/dev/shm/x`).
pub const SHM_DIR: &str = "/dev/shm";

/// The prefix a production installation uses.
pub const DEFAULT_PREFIX: &str = "keymash";

/// Longest prefix accepted. Together with [`SegmentName::MAX_LEN`] this stays far below
/// `NAME_MAX` (255).
pub const MAX_PREFIX_LEN: usize = 32;

/// A name or prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {given:?} is longer than {max} bytes")]
    TooLong {
        what: &'static str,
        given: String,
        max: usize,
    },
    #[error("{what} {given:?} contains {bad:?}; allowed are ASCII letters, digits, '_', '-'{dot}")]
    BadCharacter {
        what: &'static str,
        given: String,
        bad: char,
        dot: &'static str,
    },
    #[error("{what} {given:?} must not start with '.' or '-'")]
    BadStart { what: &'static str, given: String },
}

fn validate(what: &'static str, given: &str, max: usize, allow_dot: bool) -> Result<(), NameError> {
    if given.is_empty() {
        return Err(NameError::Empty { what });
    }
    if given.len() > max {
        return Err(NameError::TooLong {
            what,
            given: given.to_owned(),
            max,
        });
    }
    if given.starts_with('.') || given.starts_with('-') {
        return Err(NameError::BadStart {
            what,
            given: given.to_owned(),
        });
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (allow_dot && c == '.');
    if let Some(bad) = given.chars().find(|&c| !allowed(c)) {
        return Err(NameError::BadCharacter {
            what,
            given: given.to_owned(),
            bad,
            dot: if allow_dot { ", '.'" } else { "" },
        });
    }
    Ok(())
}

/// The installation-wide part of a segment's name (`keymash` by default). No dots.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

impl Prefix {
    pub fn new(prefix: &str) -> Result<Self, NameError> {
        validate("segment prefix", prefix, MAX_PREFIX_LEN, false)?;
        Ok(Prefix(prefix.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix(DEFAULT_PREFIX.to_owned())
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The per-segment part of a name, e.g. `raw-frames` or `stats.encoder`. Dots are allowed here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentName(String);

impl SegmentName {
    pub const MAX_LEN: usize = 100;

    /// The name prefix under which every service publishes its [`crate::ServiceStats`] cell.
    pub const STATS_PREFIX: &'static str = "stats.";

    pub fn new(name: &str) -> Result<Self, NameError> {
        validate("segment name", name, Self::MAX_LEN, true)?;
        Ok(SegmentName(name.to_owned()))
    }

    /// `stats.<service>`: the cell a service publishes its statistics in.
    pub fn stats_for(service: &str) -> Result<Self, NameError> {
        SegmentName::new(&format!("{}{service}", Self::STATS_PREFIX))
    }

    /// The service name if this is a statistics cell name (`stats.<service>`).
    pub fn stats_service(&self) -> Option<&str> {
        self.0.strip_prefix(Self::STATS_PREFIX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fully qualified segment: prefix plus name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegmentId {
    pub prefix: Prefix,
    pub name: SegmentName,
}

impl SegmentId {
    pub fn new(prefix: Prefix, name: SegmentName) -> Self {
        SegmentId { prefix, name }
    }

    /// Parses `"<prefix>.<name>"` (the file name under `/dev/shm`).
    pub fn parse_file_name(file_name: &str) -> Result<Self, NameError> {
        let (prefix, name) = file_name.split_once('.').ok_or(NameError::Empty {
            what: "segment name",
        })?;
        Ok(SegmentId {
            prefix: Prefix::new(prefix)?,
            name: SegmentName::new(name)?,
        })
    }

    /// The name given to `shm_open`: `/<prefix>.<name>`.
    pub fn shm_name(&self) -> String {
        format!("/{}.{}", self.prefix, self.name)
    }

    /// The file the segment appears as: `/dev/shm/<prefix>.<name>`.
    pub fn path(&self) -> String {
        format!("{SHM_DIR}/{}.{}", self.prefix, self.name)
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// The segments under `prefix` in `/dev/shm` now (names of other prefixes and files that are no
/// segment name are skipped).
pub(crate) fn segment_ids(prefix: &Prefix) -> std::io::Result<Vec<SegmentId>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        let entry = entry?;
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(id) = SegmentId::parse_file_name(&file_name) else {
            continue;
        };
        if id.prefix == *prefix {
            ids.push(id);
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_by_character_length_and_start() {
        let long = "a".repeat(SegmentName::MAX_LEN + 1);
        let max = "a".repeat(SegmentName::MAX_LEN);
        let cases: &[(&str, bool)] = &[
            ("raw-frames", true),
            ("stats.encoder", true),
            ("payload_ring2", true),
            (&max, true),
            ("", false),
            (&long, false),
            ("a/b", false),
            ("..", false),
            (".hidden", false),
            ("-flag", false),
            ("sp ace", false),
            ("ümlaut", false),
            ("nul\0", false),
        ];
        for (name, ok) in cases {
            assert_eq!(SegmentName::new(name).is_ok(), *ok, "name {name:?}");
        }
    }

    #[test]
    fn prefixes_refuse_dots_so_file_names_split_unambiguously() {
        let cases: &[(&str, bool)] = &[
            ("keymash", true),
            ("kmtest-1234_5", true),
            ("key.mash", false),
            ("", false),
            ("a/b", false),
        ];
        for (prefix, ok) in cases {
            assert_eq!(Prefix::new(prefix).is_ok(), *ok, "prefix {prefix:?}");
        }
        assert!(Prefix::new(&"p".repeat(MAX_PREFIX_LEN + 1)).is_err());
    }

    #[test]
    fn segment_id_round_trips_through_its_file_name() {
        let id = SegmentId::new(
            Prefix::default(),
            SegmentName::stats_for("encoder").unwrap(),
        );
        assert_eq!(id.path(), "/dev/shm/keymash.stats.encoder");
        assert_eq!(id.shm_name(), "/keymash.stats.encoder");
        let parsed = SegmentId::parse_file_name("keymash.stats.encoder").unwrap();
        assert_eq!(parsed, id);
        assert_eq!(parsed.name.stats_service(), Some("encoder"));
        assert!(SegmentId::parse_file_name("nodot").is_err());
    }
}
