//! `struct input_event` as the kernel hands it out of `/dev/input/event*` on 64-bit Linux:
//!
//! ```text
//! offset size field
//!  0     8    tv_sec   (i64, native endian)
//!  8     8    tv_usec  (i64)
//! 16     2    type     (u16: EV_SYN 0, EV_KEY 1, ...)
//! 18     2    code     (u16: the key code for EV_KEY)
//! 20     4    value    (i32: for EV_KEY 0 release, 1 press, 2 autorepeat)
//! ```
//!
//! The same records are accepted on the `fifo:PATH` input source, so a test can write what a
//! keyboard would.

use keymash_core::mash::KeyCode;

/// Bytes per record (`sizeof(struct input_event)` with a 64-bit `struct timeval`).
pub const EVENT_SIZE: usize = 24;

/// Event type of keys and buttons.
pub const EV_KEY: u16 = 0x01;
/// `value` of an `EV_KEY` event when the key goes down.
pub const KEY_PRESSED: i32 = 1;
/// `value` of an `EV_KEY` event the kernel repeats while a key is held (not a new keystroke).
pub const KEY_AUTOREPEAT: i32 = 2;
/// Codes from here on are mouse, joystick and other buttons (`BTN_MISC`), not keyboard keys.
pub const FIRST_BUTTON_CODE: u16 = 0x100;

/// One decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputEvent {
    pub seconds: i64,
    pub microseconds: i64,
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

impl InputEvent {
    /// An `EV_KEY` event with a zero timestamp (the service stamps presses itself on arrival).
    pub fn key(code: u16, value: i32) -> Self {
        InputEvent {
            seconds: 0,
            microseconds: 0,
            kind: EV_KEY,
            code,
            value,
        }
    }

    /// Decodes one record; native byte order, as the kernel writes it.
    pub fn from_bytes(record: &[u8; EVENT_SIZE]) -> Self {
        let mut sec = [0u8; 8];
        let mut usec = [0u8; 8];
        let mut kind = [0u8; 2];
        let mut code = [0u8; 2];
        let mut value = [0u8; 4];
        sec.copy_from_slice(&record[0..8]);
        usec.copy_from_slice(&record[8..16]);
        kind.copy_from_slice(&record[16..18]);
        code.copy_from_slice(&record[18..20]);
        value.copy_from_slice(&record[20..24]);
        InputEvent {
            seconds: i64::from_ne_bytes(sec),
            microseconds: i64::from_ne_bytes(usec),
            kind: u16::from_ne_bytes(kind),
            code: u16::from_ne_bytes(code),
            value: i32::from_ne_bytes(value),
        }
    }

    /// The record as the kernel would write it (for tests and the FIFO source's writers).
    pub fn to_bytes(&self) -> [u8; EVENT_SIZE] {
        let mut out = [0u8; EVENT_SIZE];
        out[0..8].copy_from_slice(&self.seconds.to_ne_bytes());
        out[8..16].copy_from_slice(&self.microseconds.to_ne_bytes());
        out[16..18].copy_from_slice(&self.kind.to_ne_bytes());
        out[18..20].copy_from_slice(&self.code.to_ne_bytes());
        out[20..24].copy_from_slice(&self.value.to_ne_bytes());
        out
    }
}

/// The key code if `event` is a new keystroke on a keyboard key: a press. Releases, autorepeat
/// (a held key is not mashing), synchronisation reports, mouse buttons and other event types
/// give `None`.
pub fn key_press(event: &InputEvent) -> Option<KeyCode> {
    (event.kind == EV_KEY && event.value == KEY_PRESSED && event.code < FIRST_BUTTON_CODE)
        .then_some(event.code)
}

/// Reassembles records from reads of any length: a pipe or device read may end mid-record, and
/// the rest comes with the next read.
#[derive(Debug, Default, Clone)]
pub struct EventParser {
    partial: Vec<u8>,
}

impl EventParser {
    pub fn new() -> Self {
        EventParser::default()
    }

    /// Feeds the bytes of one read; returns the whole records completed by them, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<InputEvent> {
        let mut events = Vec::with_capacity((self.partial.len() + bytes.len()) / EVENT_SIZE);
        let mut rest = bytes;
        if !self.partial.is_empty() {
            let need = EVENT_SIZE - self.partial.len();
            let take = need.min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if let Ok(record) = <&[u8; EVENT_SIZE]>::try_from(self.partial.as_slice()) {
                events.push(InputEvent::from_bytes(record));
                self.partial.clear();
            }
        }
        let mut chunks = rest.chunks_exact(EVENT_SIZE);
        for chunk in &mut chunks {
            if let Ok(record) = <&[u8; EVENT_SIZE]>::try_from(chunk) {
                events.push(InputEvent::from_bytes(record));
            }
        }
        self.partial.extend_from_slice(chunks.remainder());
        events
    }

    /// Bytes of an incomplete record waiting for the rest.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Forgets an incomplete record (the writer went away: its rest will never come).
    pub fn reset(&mut self) {
        self.partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_its_bytes() {
        let e = InputEvent {
            seconds: 1_700_000_000,
            microseconds: 123_456,
            kind: EV_KEY,
            code: 30,
            value: 1,
        };
        assert_eq!(InputEvent::from_bytes(&e.to_bytes()), e);
    }

    #[test]
    fn only_key_presses_of_keyboard_keys_count() {
        let table = [
            (InputEvent::key(30, KEY_PRESSED), Some(30)),
            (InputEvent::key(30, 0), None),
            (InputEvent::key(30, KEY_AUTOREPEAT), None),
            (InputEvent::key(0x110, KEY_PRESSED), None), // BTN_LEFT
            (
                InputEvent {
                    kind: 0,
                    ..InputEvent::key(0, 0)
                },
                None,
            ), // EV_SYN
            (
                InputEvent {
                    kind: 4,
                    ..InputEvent::key(4, 1)
                },
                None,
            ), // EV_MSC scan code
            (InputEvent::key(0xff, KEY_PRESSED), Some(0xff)),
        ];
        for (event, want) in table {
            assert_eq!(key_press(&event), want, "{event:?}");
        }
    }

    #[test]
    fn records_split_across_reads_are_reassembled() {
        let events: Vec<InputEvent> = (0..5).map(|i| InputEvent::key(16 + i, 1)).collect();
        let bytes: Vec<u8> = events.iter().flat_map(|e| e.to_bytes()).collect();
        for split in [1usize, 7, 23, 24, 25, 50, 119] {
            let mut parser = EventParser::new();
            let mut got = Vec::new();
            for piece in bytes.chunks(split) {
                got.extend(parser.feed(piece));
            }
            assert_eq!(got, events, "reads of {split} bytes");
            assert_eq!(parser.pending(), 0);
        }
    }

    #[test]
    fn an_incomplete_record_waits_and_reset_drops_it() {
        let mut parser = EventParser::new();
        let bytes = InputEvent::key(30, 1).to_bytes();
        assert!(parser.feed(&bytes[..10]).is_empty());
        assert_eq!(parser.pending(), 10);
        parser.reset();
        assert_eq!(parser.feed(&bytes), vec![InputEvent::key(30, 1)]);
    }
}
