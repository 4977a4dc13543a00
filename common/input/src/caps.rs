//! Is this input device a keyboard? Decided from the capability bitmaps the kernel publishes in
//! sysfs, so mash-input needs no ioctl (and so no `unsafe`): `capabilities/ev` lists the event
//! types, `capabilities/key` the key codes the device can send.
//!
//! The kernel prints a bitmap as hexadecimal words of `long` size (64 bits here), most
//! significant word first, separated by spaces, leading zero words left out.
//!
//! The rule is udev's (`ID_INPUT_KEYBOARD`): the device sends `EV_KEY` events and has all of
//! the first 31 keys (`KEY_ESC` = 1 through `KEY_S` = 31: Escape, the digit row, the top letter
//! row and more). Mice, power buttons, lid switches and webcam snapshot buttons have key
//! capabilities too, but never that row of keys; a barcode scanner or macro pad that claims them
//! will be read, which is what an exhibit wants (it is a keyboard to the visitor).

use crate::event::EV_KEY;

/// Bits in one word of a sysfs bitmap (`BITS_PER_LONG` on 64-bit Linux).
pub const BITS_PER_WORD: usize = 64;

/// Key codes 1..=31 (`KEY_ESC`..=`KEY_S`): bits 1 to 31 of the first word.
const KEYBOARD_KEYS_MASK: u64 = 0xFFFF_FFFE;

/// A sysfs bitmap could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    #[error("bitmap word {word:?} is not hexadecimal")]
    NotHex { word: String },
    #[error("bitmap is empty")]
    Empty,
}

/// A capability bitmap, word 0 holding bits 0..64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap(Vec<u64>);

impl Bitmap {
    pub fn bit(&self, n: usize) -> bool {
        self.0
            .get(n / BITS_PER_WORD)
            .is_some_and(|w| (w >> (n % BITS_PER_WORD)) & 1 == 1)
    }

    fn word(&self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

/// Parses a bitmap as sysfs prints it (`"120013\n"`, `"3 0 0 fffffffffffffffe"`).
pub fn parse_bitmap(text: &str) -> Result<Bitmap, CapsError> {
    let mut words = Vec::new();
    for word in text.split_whitespace().rev() {
        let value = u64::from_str_radix(word, 16).map_err(|_| CapsError::NotHex {
            word: word.to_owned(),
        })?;
        words.push(value);
    }
    if words.is_empty() {
        return Err(CapsError::Empty);
    }
    Ok(Bitmap(words))
}

/// Whether a device with these `ev` and `key` capability bitmaps is a keyboard (see the module
/// documentation for the rule).
pub fn is_keyboard(ev: &Bitmap, key: &Bitmap) -> bool {
    ev.bit(usize::from(EV_KEY)) && key.word(0) & KEYBOARD_KEYS_MASK == KEYBOARD_KEYS_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyboard(ev: &str, key: &str) -> bool {
        is_keyboard(&parse_bitmap(ev).unwrap(), &parse_bitmap(key).unwrap())
    }

    #[test]
    fn devices_are_classified_like_udev_does() {
        // Bitmaps of the shape such devices publish.
        let table = [
            (
                "AT keyboard",
                "120013",
                "402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe",
                true,
            ),
            (
                "USB keyboard",
                "120013",
                "1000000000007 ff9f207ac14057ff febeffdfffefffff fffffffffffffffe",
                true,
            ),
            ("USB mouse", "17", "1f0000 0 0 0 0", false),
            ("power button", "3", "10000000000000 0", false),
            ("lid switch", "21", "0", false),
            ("keys but no EV_KEY", "11", "fffffffffffffffe", false),
            ("missing KEY_S", "3", "7ffffffe", false),
        ];
        for (name, ev, key, want) in table {
            assert_eq!(keyboard(ev, key), want, "{name}");
        }
    }

    #[test]
    fn words_run_from_most_significant_first() {
        let b = parse_bitmap("1 0 8000000000000000\n").unwrap();
        assert!(b.bit(63));
        assert!(!b.bit(64));
        assert!(b.bit(128));
        assert!(!b.bit(1000));
    }

    #[test]
    fn bitmaps_that_are_not_hex_are_refused() {
        assert_eq!(
            parse_bitmap("12 zz"),
            Err(CapsError::NotHex {
                word: "zz".to_owned()
            })
        );
        assert_eq!(parse_bitmap("  \n"), Err(CapsError::Empty));
    }
}
