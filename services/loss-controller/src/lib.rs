//! keymash-loss-controller: the one privileged keymash process. It runs the eBPF loss filter
//! (ebpf/keymash_loss.bpf.c) at the receiver NIC's ingress and keeps its drop probability in
//! step with the mash level.
//!
//! - [`layout`]: the map layout shared with the C side (`ebpf/keymash_loss.h`).
//! - [`loss_model`], [`plan`]: pure logic (models, mash curve, deadline, drop rate).
//! - [`filter`]: the kernel side through aya (load, attach, maps, BPF_PROG_TEST_RUN).
//! - [`cli`], [`runner`]: arguments and the working loop `main` calls.
//! - [`cells`]: the mash cell it follows and the statistics cell it publishes.
#![forbid(unsafe_code)]

pub mod cells;
pub mod cli;
pub mod filter;
pub mod layout;
pub mod loss_model;
pub mod plan;
pub mod runner;
