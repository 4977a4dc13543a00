#!/usr/bin/env bash
# The one-command demo: on a fresh Debian 12 machine, from a checkout of this repository,
#   sudo ./deploy/demo.sh [--seconds N] [--delay S] [--keep]
# installs what it needs, builds in release mode and runs `keymash demo --out ./keymash-demo`:
# the whole pipeline on this machine, a per-second table and ./keymash-demo/contact-sheet.png.
# As root the two PCs are two network namespaces with the eBPF loss filter between them.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    echo "demo.sh: not root; running itself again with sudo (namespaces, eBPF and apt need root)"
    exec sudo --preserve-env=DISPLAY,WAYLAND_DISPLAY,XAUTHORITY "$0" "$@"
  fi
  echo "demo.sh: not root and no sudo: skipping package installation; LOSS IS OFF (no namespaces, no eBPF)"
else
  ./deploy/install-deps.sh demo
fi

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked --bins
exec "${CARGO_TARGET_DIR:-target}/release/keymash" demo --out ./keymash-demo "$@"
