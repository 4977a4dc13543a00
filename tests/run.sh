#!/usr/bin/env bash
# keymash's test command: installs what the tests need, builds every binary, runs every test.
# Runs as root: the loss-filter and pipeline tests create network namespaces, attach eBPF
# programs and boot systemd in a namespace. Everything they create is removed again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME "$0" "$@"; fi

deploy/install-deps.sh test
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# The tests run the real service binaries, so build them all first.
cargo build --workspace --bins --locked
# Library and service code must be clippy-clean (no unwrap on input, among others); tests and
# benches may unwrap.
cargo clippy --workspace --lib --bins --locked -- -D warnings
cargo test --workspace --locked "$@"
