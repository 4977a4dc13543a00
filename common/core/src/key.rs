//! The pre-shared key both PCs hold (`/etc/keymash/keymash.key`, written by `keymash keygen`).
//!
//! The file is text: comment lines starting with `#`, and one line of 64 hexadecimal digits,
//! the 32 key bytes. Nothing else is accepted, so a truncated copy or a pasted fragment is
//! refused with its cause instead of silently becoming a different key. Parsing and formatting
//! are pure; only [`crate::config::Config::load_key`] reads the file.

use std::fmt;

/// Length of the pre-shared key in bytes (256 bits).
pub const KEY_LEN: usize = 32;

/// The 256-bit pre-shared key. Its `Debug` never prints the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PreSharedKey([u8; KEY_LEN]);

/// Why a key file's text is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("no key line (64 hexadecimal digits) in the file")]
    Missing,
    #[error("the key line has {0} characters, a key is 64 hexadecimal digits")]
    WrongLength(usize),
    #[error("the key line has a character that is not a hexadecimal digit: {0:?}")]
    NotHex(char),
    #[error("more than one key line in the file")]
    SeveralKeys,
}

impl PreSharedKey {
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PreSharedKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Parse the text of a key file.
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let line = lines.next().ok_or(KeyFileError::Missing)?;
        if lines.next().is_some() {
            return Err(KeyFileError::SeveralKeys);
        }
        if let Some(c) = line.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(KeyFileError::NotHex(c));
        }
        if line.len() != 2 * KEY_LEN {
            return Err(KeyFileError::WrongLength(line.chars().count()));
        }
        let mut key = [0u8; KEY_LEN];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&line[2 * i..2 * i + 2], 16)
                .map_err(|_| KeyFileError::NotHex('?'))?;
        }
        Ok(PreSharedKey(key))
    }

    /// The text of a key file holding this key.
    pub fn to_file_text(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "# keymash pre-shared key (keymash keygen). Both PCs need this same file; keep it secret\n\
             # (mode 0640 root:keymash). Copy it to the other PC, e.g. with scp.\n{hex}\n"
        )
    }
}

impl fmt::Debug for PreSharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PreSharedKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_key_file_parses_back_to_the_same_key() {
        let key = PreSharedKey::from_bytes(std::array::from_fn(|i| i as u8 * 7));
        assert_eq!(PreSharedKey::parse(&key.to_file_text()), Ok(key.clone()));
        assert_eq!(format!("{key:?}"), "PreSharedKey(..)");
    }

    #[test]
    fn damaged_key_files_are_refused_with_their_cause() {
        let good = "ab".repeat(32);
        let cases = [
            ("", KeyFileError::Missing),
            ("# only a comment\n", KeyFileError::Missing),
            (&good[..62], KeyFileError::WrongLength(62)),
            (&format!("{good}00"), KeyFileError::WrongLength(66)),
            (&format!("{}zz", &good[..62]), KeyFileError::NotHex('z')),
            (&format!("{good}\n{good}\n"), KeyFileError::SeveralKeys),
        ];
        for (text, want) in cases {
            assert_eq!(PreSharedKey::parse(text), Err(want), "{text:?}");
        }
    }
}
