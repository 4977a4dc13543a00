#!/usr/bin/env bash
# keymash's test command: installs what the tests need, builds every binary and bench, runs clippy
# on all targets, then every test executable under a wall-clock bound, and prints a summary.
#   sudo ./tests/run.sh [LIBTEST-ARGS...]   e.g. tests/run.sh kill9   tests/run.sh --nocapture kill9
# The arguments go to every test executable and the doctests: libtest's filters and options, as
# after `cargo test --` (cargo's own options, such as -p, do not apply here).
# Runs as root: the loss-filter and pipeline tests create network namespaces, attach eBPF
# programs and boot systemd in a namespace. Everything they create is removed again.
# KEYMASH_TEST_TIMEOUT (seconds, default 300) bounds each test executable.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME,CI,KEYMASH_TEST_TIMEOUT "$0" "$@"; fi
repo="$(pwd)"

deploy/install-deps.sh test
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# One bound per test executable, so no test can hang CI (whose job limit is 90 minutes). Measured
# on 2 cores with other builds and tests running beside them, the slowest executables took 177 s
# (receiver_loss_latency_ebpf: 2 x 60 s of lossy streaming plus its no-loss phases, fixed times
# that do not stretch with load; 178 s beside stress-ng and a whole CI run), 70 s (systemd_faults)
# and 41 s; the summary below prints the slowest ten of every run. 300 s is four times every
# other executable and 120 s of room for the fixed-time one, and even a dozen hung executables
# would leave the run inside CI's limit.
per_binary="${KEYMASH_TEST_TIMEOUT:-300}"

# Formatting is checked, not fixed: `cargo fmt --all` before committing.
cargo fmt --all --check || { echo "run.sh: code is not rustfmt-clean; run 'cargo fmt --all'" >&2; exit 1; }

# The tests run the real service binaries, so build them all first (the test support builds them
# again if they are stale, a no-op here).
cargo build --workspace --bins --locked
# Library and service code must be clippy-clean (no unwrap on input, among others; tests may unwrap,
# see clippy.toml); tests and benches get the same -D warnings.
cargo clippy --workspace --all-targets --locked -- -D warnings
# Every bench must build, though CI does not run them.
cargo bench --workspace --no-run --locked

# Build every test executable (errors shown as usual), then list them: one JSON message per
# artifact, test executables have "test":true in their profile. Parsed with sed: a fresh machine
# has no jq or python.
cargo test --workspace --locked --no-run
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo test --workspace --locked --no-run --message-format=json >"$work/artifacts.json"
sed -n 's/^{"reason":"compiler-artifact",.*"manifest_path":"\([^"]*\)","target":{"kind":\["\([^"]*\)"[^}]*"name":"\([^"]*\)"[^}]*},"profile":{[^}]*"test":true[^}]*}.*"executable":"\([^"]*\)".*$/\1\t\2 \3\t\4/p' \
  "$work/artifacts.json" >"$work/executables.tsv"
count=$(wc -l <"$work/executables.tsv")
[ "$count" -gt 0 ] || { echo "run.sh: found no test executables in cargo's output" >&2; exit 1; }

# Run one test executable as cargo would (working directory: its package's directory; CARGO and
# CARGO_MANIFEST_DIR set; the tests read nothing else of cargo's at run time), its output shown as
# it comes and kept in "$work/N.log". Output goes to a file, not a pipe, so a leftover grandchild
# holding stdout open cannot stall this script. Sets $rc.
cargo_bin="$(command -v cargo)"
run_bounded() {
  local dir="$1" log="$2"
  shift 2
  : >"$log"
  (cd "$dir" && exec env CARGO="$cargo_bin" CARGO_MANIFEST_DIR="$dir" CARGO_MANIFEST_PATH="$dir/Cargo.toml" \
    timeout --kill-after=10 "$per_binary" "$@") >>"$log" 2>&1 &
  local pid=$!
  # `timeout` runs the test in its own process group (and kills that whole group when time is
  # up), so Ctrl-C on this script must be passed on.
  trap 'kill -TERM $pid 2>/dev/null; wait $pid; exit 130' INT TERM
  tail -n +1 -s 0.1 -f --pid="$pid" "$log"
  rc=0
  wait "$pid" || rc=$?
  trap - INT TERM
  # What the test started and left running is in that group too (a timed-out test dies before
  # its guards run; `unshare --fork` ignores SIGTERM and keeps a booted systemd alive): kill it.
  if kill -0 -- -"$pid" 2>/dev/null; then
    echo "===== left running, now killed: $(pgrep -d ', ' -a -g "$pid" || true)" | tee -a "$log"
    kill -KILL -- -"$pid" 2>/dev/null || true
  fi
}

# Names of network namespaces and shared-memory segments, to report what a test left behind.
leftovers() { { ip netns list 2>/dev/null | sed 's/ .*//; s/^/netns /'; ls /dev/shm | sed 's|^|/dev/shm/|'; } | sort; }

failed_binaries=()
n=0
: >"$work/times"
: >"$work/left"
while IFS=$'\t' read -r manifest name exe; do
  n=$((n + 1))
  dir="$(dirname "$manifest")"
  label="${dir#"$repo"/}: $name"
  echo "===== [$n/$count] $label"
  leftovers >"$work/before"
  start=$(date +%s%N)
  run_bounded "$dir" "$work/$n.log" "$exe" "$@"
  ms=$((($(date +%s%N) - start) / 1000000))
  leftovers | comm -13 "$work/before" - | sed "s|^|$label\t|" >>"$work/left"
  printf '%d.%03d\t%s\n' $((ms / 1000)) $((ms % 1000)) "$label" >>"$work/times"
  # timeout's status: 124 when the test ended on SIGTERM, 137 when it needed the SIGKILL.
  if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ "$ms" -ge $((per_binary * 1000)) ]; }; then
    echo "===== TIMED OUT after ${per_binary} s: $label"
    failed_binaries+=("$label: timed out after ${per_binary} s")
  elif [ "$rc" != 0 ]; then
    failed_binaries+=("$label: exit status $rc")
  fi
done <"$work/executables.tsv"

# Doctests (cargo builds and runs them itself), under the same bound.
echo "===== doctests"
start=$(date +%s%N)
run_bounded "$repo" "$work/doc.log" cargo test --workspace --doc --locked -- "$@"
ms=$((($(date +%s%N) - start) / 1000000))
printf '%d.%03d\t%s\n' $((ms / 1000)) $((ms % 1000)) "doctests" >>"$work/times"
[ "$rc" = 0 ] || failed_binaries+=("doctests: exit status $rc")

# Summary. libtest ends each executable with "test result: ok. N passed; M failed; K ignored; ...";
# a test that could not run its check outside CI writes a line starting "!!!!! SKIPPED" and counts
# as skipped here (libtest counts it as passed).
sum() {
  local total=0 k
  for k in $(grep -h '^test result: ' "$work"/*.log | grep -o "[0-9]* $1;" | grep -o '^[0-9]*'); do total=$((total + k)); done
  echo "$total"
}
passed=$(sum passed)
failed=$(sum failed)
ignored=$(sum ignored)
skipped_checks=$(cat "$work"/*.log | grep -c '^!!!!! SKIPPED' || true)
passed=$((passed - skipped_checks))
skipped=$((ignored + skipped_checks))
echo
echo "===== summary: $count test executables and the doctests, each bounded to ${per_binary} s"
echo "slowest (seconds):"
sort -t$'\t' -k1,1 -rn "$work/times" | head -n 10 | sed 's/^/  /'
if [ "$skipped_checks" -gt 0 ]; then
  echo "skipped (this machine cannot run the check; under CI they fail):"
  grep -h '^!!!!! SKIPPED' "$work"/*.log | sed 's/^/  /'
fi
# What appeared while an executable ran and is still there now (a test's guards remove what it
# creates, unless it was killed).
leftovers >"$work/after"
left="$(sort -t$'\t' -k2 "$work/left" | join -t$'\t' -1 2 -2 1 -o 1.1,1.2 - "$work/after" || true)"
if [ -n "$left" ]; then
  echo "left behind by (and still there):"
  echo "$left" | sed 's/^/  /'
fi
if [ "${#failed_binaries[@]}" -gt 0 ]; then
  echo "failed test executables:"
  printf '  %s\n' "${failed_binaries[@]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "${#failed_binaries[@]}" = 0 ] && [ "$failed" = 0 ]
