//! The keymash intra codec: JPEG-like macroblock coding into self-contained payloads.
#![forbid(unsafe_code)]
