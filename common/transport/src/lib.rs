//! The keymash transport: RTP/RTCP, receive window, pacing, XOR FEC and NACK, as sans-IO state machines.
#![forbid(unsafe_code)]
