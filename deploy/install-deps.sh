#!/usr/bin/env bash
# Install what keymash needs on a Debian 12 / Ubuntu machine, for one purpose:
#   deploy/install-deps.sh build   compile the workspace and the eBPF object
#   deploy/install-deps.sh test    build + what the test suite uses (namespaces, tshark, Xvfb)
#   deploy/install-deps.sh demo    the same as test: the demo runs the pipeline in namespaces
# Idempotent: packages already present are left alone. Needs root (apt-get).
set -euo pipefail

purpose="${1:-build}"
case "$purpose" in build|test|demo) ;; *) echo "usage: $0 build|test|demo" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "$0: run as root (it installs apt packages)" >&2; exit 1; }

# clang/llvm/libbpf-dev: the eBPF classifier is C compiled with clang -target bpf.
# libclang-dev: bindgen (the v4l crate generates its V4L2 bindings at build time).
# libsdl2-dev: the display's window output. pkg-config: how -sys crates find C libraries.
build_packages=(build-essential pkg-config clang libclang-dev llvm libbpf-dev linux-libc-dev libsdl2-dev curl ca-certificates)
# iproute2: network namespaces and tc; tshark: the RTP/RTCP interop test; bpftool: running the
# classifier on synthetic packets and reading its run-time stats; xvfb: the SDL2 window test;
# procps: ps/pgrep in the process tests; libturbojpeg0-dev: the codec benchmark's baseline (a
# dev-dependency, so the test build links it too).
test_packages=(iproute2 tshark bpftool xvfb procps libturbojpeg0-dev)

packages=("${build_packages[@]}")
[ "$purpose" = build ] || packages+=("${test_packages[@]}")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; the default answer (no) is right here.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: Debian's own rustc is too old for the workspace; use rustup's stable toolchain when no
# cargo is on the PATH. (Not exercised in this project's CI, whose machine ships a toolchain.)
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "installing the Rust stable toolchain with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
