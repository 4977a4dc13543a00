#!/usr/bin/env bash
# Install what keymash needs on a Debian 12 / Ubuntu machine, for one purpose:
#   deploy/install-deps.sh build   compile the workspace and the eBPF object
#   deploy/install-deps.sh test    build + everything the test suite runs (namespaces, tshark, Xvfb, ffmpeg, systemd)
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
# Every program the tests, their support code (tests/src, common/testbed) and the scripts they run
# (deploy/install.sh) start, by package; tests/run.sh also needs coreutils' `timeout`:
# - iproute2: `ip` (network namespaces, veth pairs) and `tc` (the loss filter's clsact qdisc).
# - tshark: common/transport's RTP/RTCP interop test (it brings dumpcap, which captures).
# - xvfb: `Xvfb`, the X server of the SDL2 window test (receiver_window_glow).
# - ffmpeg: the same test's screenshot (`ffmpeg -f x11grab`); `ffprobe` reads keymash-archive's
#   files back (archive_plays).
# - chromium: the web page test (web_page_in_chromium) loads keymash-web's page in headless
#   Chromium and screenshots it.
# - systemd: systemd itself, `systemctl`, `journalctl`, `systemd-sysusers` (systemd_pipeline boots
#   it in a namespace and install.sh runs inside), `systemd-analyze verify` (systemd_units). A
#   minimal Debian (a container image) has no systemd.
# - procps: `kill` (signals to services, SIGINT to tshark) and `pgrep`; a minimal Debian lacks it.
# - util-linux: `unshare`, `nsenter`, `pivot_root` (booting systemd in a namespace) and `setpriv`
#   (the loss controller's capability test); mount: `mount` (the same boot). Both are on any
#   Debian; listed so that the list is whole.
# - libturbojpeg0-dev: the codec benches' baseline: the speed bench links libturbojpeg into its
#   own process (so `cargo bench --no-run`, which CI runs, needs it), and the quality bench
#   compiles a C helper against it with `cc` (build-essential, above) when run.
# - bpftool: no test; for looking at the loaded filter by hand (`bpftool prog`, `bpftool map
#   dump`) when a loss test fails.
# - qemu-user: `qemu-x86_64 -cpu core2duo` runs keymash as on an old Optiplex without AVX
#   (codec_on_an_old_cpu: the codec picks SSE2 there and codes the same bytes).
# No test uses stress-ng (the load runs bring their own), so it is not installed.
test_packages=(iproute2 tshark xvfb ffmpeg chromium systemd util-linux mount procps libturbojpeg0-dev bpftool qemu-user)

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
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
fi
