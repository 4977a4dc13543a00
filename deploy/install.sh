#!/usr/bin/env bash
# Set up a keymash PC (Debian 12 / Ubuntu), or take keymash off it again.
#
#   sudo deploy/install.sh --role sender   [--config FILE] [--start] [--web|--no-web]
#   sudo deploy/install.sh --role receiver [--config FILE] [--start] [--web|--no-web]
#                                          [--archive|--no-archive]
#   sudo deploy/install.sh --uninstall [--purge-config]
#
# --web enables keymash-web (metrics, status page, the picture on the screen; [web] in the
# configuration), --archive the receiver's recording (keymash-archive, [archive]); both are off
# on a fresh install, --no-web / --no-archive turn them off again, and a run without either
# flag leaves them as they are.
# Installs the packages it needs, builds in release mode (the eBPF object is compiled from
# ebpf/ by the loss-controller's build), then installs the binaries to /usr/local/bin, the
# units to /usr/local/lib/systemd/system, the keymash system user (sysusers.d), the annotated
# configuration to /etc/keymash/keymash.toml (never overwriting an existing one; --config FILE
# installs FILE instead when there is none), the link's pre-shared key to /etc/keymash/keymash.key
# when there is none (the first PC; copy that file to the other PC before installing there),
# reloads systemd and enables the role's target.
# A second run changes nothing. --uninstall stops and removes everything it installed, the
# configuration only with --purge-config.
#
# For packaging and tests: --root DIR installs into DIR as if it were / (no service manager or
# user database is touched beyond DIR), --no-build takes the binaries from target/release as
# they are (or from --binaries DIR), --no-deps skips the package installation.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
role="" config="" start=0 uninstall=0 purge_config=0 root="" staged=0 build=1 deps=1 binaries_from=""
web="" archive=""

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --role) role="${2:-}"; shift 2 ;;
    --config) config="${2:-}"; shift 2 ;;
    --start) start=1; shift ;;
    --web) web=1; shift ;;
    --no-web) web=0; shift ;;
    --archive) archive=1; shift ;;
    --no-archive) archive=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge-config) purge_config=1; shift ;;
    --root) root="${2:-}"; staged=1; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-deps) deps=0; shift ;;
    --binaries) binaries_from="${2:-}"; build=0; shift 2 ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown argument $1" >&2; usage ;;
  esac
done

if [ "$staged" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo deploy/install.sh ...)" >&2; exit 1
fi
if [ "$staged" = 1 ]; then
  [ -n "$root" ] || { echo "install.sh: --root needs a directory" >&2; exit 2; }
  mkdir -p "$root"; root="$(cd "$root" && pwd)"; root="${root%/}"
fi

binaries=(keymash keymash-capture keymash-delay-buffer keymash-encoder keymash-net-tx
          keymash-net-rx keymash-display keymash-mash-input keymash-loss-controller
          keymash-web keymash-archive)
bin_dir="$root/usr/local/bin"
unit_dir="$root/usr/local/lib/systemd/system"
sysusers_dir="$root/usr/local/lib/sysusers.d"
doc_dir="$root/usr/local/share/doc/keymash"
etc_dir="$root/etc/keymash"
systemctl_() { if [ "$staged" = 1 ]; then systemctl --root="${root:-/}" "$@"; else systemctl "$@"; fi; }
changed=0
say() { echo "install.sh: $*"; }
# Run a command without its chatter ("Created symlink ..."), but stop with its messages if it fails.
quietly() {
  local out
  if ! out="$("$@" 2>&1)"; then
    echo "$out" >&2
    echo "install.sh: failed: $*" >&2
    exit 1
  fi
}

# Copy $1 to $2 with mode $3 unless $2 already has exactly that content and mode.
put() {
  local src="$1" dst="$2" mode="$3"
  if [ -f "$dst" ] && cmp -s "$src" "$dst" && [ "$(stat -c %a "$dst")" = "${mode#0}" ]; then
    return 0
  fi
  install -D -m "$mode" "$src" "$dst"
  say "installed $dst"
  changed=1
}

remove() {
  local path="$1"
  if [ -e "$path" ] || [ -L "$path" ]; then rm -f "$path"; say "removed $path"; fi
}

if [ "$uninstall" = 1 ]; then
  for target in keymash-sender.target keymash-receiver.target keymash-web.service keymash-archive.service; do
    if [ "$staged" = 0 ]; then systemctl stop "$target" 2>/dev/null || true; fi
    systemctl_ disable "$target" >/dev/null 2>&1 || true
  done
  if [ "$staged" = 0 ] && [ -x "$bin_dir/keymash" ]; then
    # The rings (and the delay buffer's video) live in /dev/shm under the configured prefix.
    # Uninstalling goes on either way, but a segment left behind is said, not swallowed.
    if [ -f "$etc_dir/keymash.toml" ]; then
      "$bin_dir/keymash" clean --role all --force --config "$etc_dir/keymash.toml" >/dev/null \
        || say "warning: keymash clean failed (above); remove what is left with: ls /dev/shm"
    else
      "$bin_dir/keymash" clean --role all --force >/dev/null \
        || say "warning: keymash clean failed (above); remove what is left with: ls /dev/shm"
    fi
  fi
  for unit in "$repo"/systemd/keymash-*; do remove "$unit_dir/$(basename "$unit")"; done
  for b in "${binaries[@]}"; do remove "$bin_dir/$b"; done
  remove "$sysusers_dir/keymash.conf"
  remove "$doc_dir/README.md"; remove "$doc_dir/keymash.toml.example"
  rmdir "$doc_dir" 2>/dev/null || true
  if [ "$purge_config" = 1 ]; then
    remove "$etc_dir/keymash.toml"; remove "$etc_dir/keymash.key"; rmdir "$etc_dir" 2>/dev/null || true
  elif [ -f "$etc_dir/keymash.toml" ]; then
    say "kept $etc_dir/keymash.toml and the key (--purge-config removes them)"
  fi
  if [ "$staged" = 0 ]; then
    if id keymash >/dev/null 2>&1; then
      if userdel keymash; then say "removed user keymash"; else say "warning: could not remove user keymash (above)"; fi
    fi
    systemctl daemon-reload
  elif grep -q '^keymash:' "$root/etc/passwd" 2>/dev/null; then
    userdel --prefix "${root:-/}" keymash && say "removed user keymash"
  fi
  say "uninstalled"
  exit 0
fi

case "$role" in
  sender|receiver) ;;
  *) echo "install.sh: --role sender or --role receiver is required" >&2; usage ;;
esac
if [ "$archive" = 1 ] && [ "$role" != receiver ]; then
  echo "install.sh: --archive records what the receiver's screen shows: use it with --role receiver" >&2; exit 2
fi
if [ -n "$config" ] && [ ! -f "$config" ]; then
  echo "install.sh: --config $config: no such file" >&2; exit 1
fi

if [ "$deps" = 1 ]; then "$repo/deploy/install-deps.sh" build; fi
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
release="${binaries_from:-${CARGO_TARGET_DIR:-$repo/target}/release}"
if [ "$build" = 1 ]; then
  say "building (release)"
  (cd "$repo" && cargo build --release --locked --bins)
fi
for b in "${binaries[@]}"; do
  [ -x "$release/$b" ] || { echo "install.sh: $release/$b is missing; build first" >&2; exit 1; }
done

# Refuse a configuration before installing anything that would start with it: check-config runs
# the check every service runs at start, so what passes here no service refuses (a delay beyond
# delay.max_memory_mib, a frame size the codec cannot code, a pacing the transport cannot use, a
# mash script...). Its key file is checked once the key is in place (below): on the first PC
# this script creates it.
new_config="${config:-$repo/deploy/keymash.toml}"
"$release/keymash" check-config --no-key "$new_config" >/dev/null

for b in "${binaries[@]}"; do put "$release/$b" "$bin_dir/$b" 0755; done
for unit in "$repo"/systemd/keymash-*.service "$repo"/systemd/keymash-*.target; do
  put "$unit" "$unit_dir/$(basename "$unit")" 0644
done
put "$repo/systemd/sysusers.d/keymash.conf" "$sysusers_dir/keymash.conf" 0644
put "$repo/README.md" "$doc_dir/README.md" 0644
put "$repo/deploy/keymash.toml" "$doc_dir/keymash.toml.example" 0644

if [ "$staged" = 1 ]; then
  mkdir -p "$root/etc"
  systemd-sysusers --root="${root:-/}" "$sysusers_dir/keymash.conf"
else
  systemd-sysusers "$sysusers_dir/keymash.conf"
fi

# Give $1 to group keymash, which the services read it as. A failure stops the install: a file
# the services cannot read would stop them at start, long after this script said "done". In a
# staged root the group is the root's own (systemd-sysusers --root wrote it there; the host may
# have no such group), so it is looked up there and given by number.
give_to_keymash() {
  local file="$1" gid
  if [ "$staged" = 1 ]; then
    gid="$(awk -F: '$1 == "keymash" { print $3 }' "$root/etc/group")" || gid=""
    if [ -z "$gid" ]; then
      echo "install.sh: $root/etc/group has no group keymash after systemd-sysusers; cannot give it $file" >&2
      exit 1
    fi
    if [ "$(id -u)" != 0 ]; then
      # Only root can give a file to a group it is not in; a staging run as a user (packaging)
      # leaves the group to whoever installs the tree, and says so.
      say "not root: $file keeps group $(stat -c %G "$file"); it must belong to group keymash ($gid)"
      return 0
    fi
  else
    gid="$(getent group keymash | cut -d: -f3)" || gid=""
    if [ -z "$gid" ]; then
      echo "install.sh: no group keymash after systemd-sysusers ($sysusers_dir/keymash.conf); cannot give it $file" >&2
      exit 1
    fi
  fi
  chgrp "$gid" "$file"
}

if [ -f "$etc_dir/keymash.toml" ]; then
  [ -z "$config" ] || say "kept the existing $etc_dir/keymash.toml; --config $config was not installed"
else
  install -D -m 0640 "$new_config" "$etc_dir/keymash.toml"
  say "installed $etc_dir/keymash.toml (edit the addresses, interface and camera, then: keymash check-config)"
  changed=1
fi
# Services read the config as the keymash user; root owns it.
give_to_keymash "$etc_dir/keymash.toml"

# The pre-shared key of the link (security.key_file): created on the first PC, copied to the other.
if [ ! -f "$etc_dir/keymash.key" ]; then
  "$release/keymash" keygen --output "$etc_dir/keymash.key" >/dev/null
  say "created the link's key $etc_dir/keymash.key: copy it to the other PC (same path, mode 0640 root:keymash) before installing there, e.g. scp -p $etc_dir/keymash.key root@OTHER-PC:$etc_dir/keymash.key"
  changed=1
fi
chmod 0640 "$etc_dir/keymash.key"
give_to_keymash "$etc_dir/keymash.key"
# The installed configuration with its key (security.key_file may name another file): the
# services would refuse to start without it. A staged root's configuration names paths of the
# real root, so only a real install can check them.
if [ "$staged" = 0 ]; then "$release/keymash" check-config "$etc_dir/keymash.toml" >/dev/null; fi

if [ "$staged" = 0 ]; then systemctl daemon-reload; fi
target="keymash-$role.target"
other="keymash-$([ "$role" = sender ] && echo receiver || echo sender).target"
if systemctl_ is-enabled "$other" >/dev/null 2>&1; then
  quietly systemctl_ disable "$other"
  say "disabled $other (this PC is now the $role)"
  changed=1
fi
if ! systemctl_ is-enabled "$target" >/dev/null 2>&1; then
  quietly systemctl_ enable "$target"
  say "enabled $target"
  changed=1
fi
# The optional watchers: enabled or disabled only when asked, so a re-run keeps the choice.
# The recording belongs to the receiver: a PC that becomes the sender stops it.
set_optional() {
  local unit="$1" wanted="$2"
  if [ "$wanted" = 1 ] && ! systemctl_ is-enabled "$unit" >/dev/null 2>&1; then
    quietly systemctl_ enable "$unit"
    say "enabled $unit"
    changed=1
  elif [ "$wanted" = 0 ] && systemctl_ is-enabled "$unit" >/dev/null 2>&1; then
    quietly systemctl_ disable "$unit"
    if [ "$staged" = 0 ]; then systemctl stop "$unit" 2>/dev/null || true; fi
    say "disabled $unit"
    changed=1
  fi
}
[ "$role" = receiver ] || [ -n "$archive" ] || archive=0
set_optional keymash-web.service "$web"
set_optional keymash-archive.service "$archive"
if [ "$start" = 1 ] && [ "$staged" = 0 ]; then
  systemctl restart "$target"
  say "started $target (keymash status shows the stages)"
fi
[ "$changed" = 1 ] || say "nothing to change"
say "done: this PC is the keymash $role"
