//! keymash-service: what every keymash binary shares at its edges (lifecycle, logging, arguments).
#![forbid(unsafe_code)]
