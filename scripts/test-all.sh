#!/usr/bin/env bash
# The README's test command: every test aedb has, from a fresh clone, nothing by hand.
#
# Knobs (environment):
#   AEDB_CRASH_CYCLES      SIGKILL crash-test cycles (default 50)
#   AEDB_SIM_CRASH_POINTS  simulated power-loss crash points of the optimised run (default
#                          10000; the debug run of the suite does 500); AEDB_SIM_SEED sets
#                          the first seed, AEDB_SIM_CRASH_AT replays one point
#   LOOM_MAX_PREEMPTIONS   loom preemption bound (default 3)
#   AEDB_FUZZ_SECONDS      seconds per fuzz target (default 10)
#   AEDB_SKIP_CLIPPY=1     skip the fmt/clippy gate (local iteration only; CI never sets it)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# A clean run writes several GB of build output (debug tests, release, loom, the fuzz
# targets' sanitizer builds); say how much room there was, so a full disk is told apart
# from a failing test. On CI every build is a first build: incremental state only costs disk.
df -h . | tail -n 1 | awk '{print "disk: " $4 " free of " $2 " on " $6}'
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

if [ "${AEDB_SKIP_CLIPPY:-0}" != "1" ]; then
  step "format and lint gate"
  cargo fmt --all -- --check
  cargo clippy --workspace --all-targets -- -D warnings
  cargo clippy -p aedb -p aedb-actors -p aedb-wal -p aedb-checkpoint -p aedb-keys -p aedb-session \
    --all-targets --features observability -- -D warnings
fi

step "unit, integration, property, crash and doc tests"
# The power-loss exploration runs here with its short debug default; its campaign is the
# optimised step below.
AEDB_CRASH_CYCLES="${AEDB_CRASH_CYCLES:-50}" AEDB_SIM_CRASH_POINTS=500 \
  cargo test --workspace --lib --bins --tests --examples
cargo test --workspace --doc

step "power-loss exploration on the simulated disk (optimised build, AEDB_SIM_CRASH_POINTS)"
AEDB_SIM_CRASH_POINTS="${AEDB_SIM_CRASH_POINTS:-10000}" \
  cargo test --release -p aedb --test power_loss

step "observability feature: Prometheus exposition and alert rules checked by promtool, spans without secrets, IHP metric names"
# promtool ships in Debian's `prometheus` package. Installed non-interactively (CI runs
# as root, CI=true, no stdin); the test fails rather than skips without it.
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing promtool (Debian package prometheus)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "promtool is missing and this is not root; install the Debian package prometheus" >&2
    exit 1
  fi
  # The package ships a server whose postinst tries to start it; on a machine without an
  # init system that must not fail the install (the usual container policy-rc.d guard).
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
  if [ -n "$guard" ]; then rm -f "$guard"; fi
fi
cargo test -p aedb --features observability --test observability --example opentelemetry
# The runbook's alert rules (README "Alerts"): valid rules; the test above checks that the
# exposition holds every metric they use.
promtool check rules docs/alerts.rules.yml
# aedb-session's own observability tests (the IHP runbook metric names) exist only with
# the feature; the workspace run above builds the crate without it. (aedb-authz has no
# observability feature: it emits no metrics or spans.)
cargo test -p aedb-session --features observability

step "golden fixtures decoded by an independent Python implementation of docs/FORMAT.md"
# Python's `cryptography` (ChaCha20-Poly1305): whichever `python3` has it, else Debian's
# python3-cryptography, installed non-interactively for the system interpreter
# (/usr/bin/python3: a `python3` earlier on PATH, pyenv's say, does not see Debian's
# packages). The step fails rather than skips without it.
golden_python=""
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import cryptography' >/dev/null 2>&1; then
    golden_python="$py"
    break
  fi
done
if [ -z "$golden_python" ]; then
  echo "installing Python cryptography (Debian package python3-cryptography)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "Python cryptography is missing and this is not root; install python3-cryptography" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-cryptography
  golden_python=/usr/bin/python3
fi
(cd checkpoint/tests/golden && "$golden_python" ../golden_independent_check.py > /dev/null)
echo "golden fixtures: independent decode matches"

step "loom models (bounded preemptions)"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}" \
  cargo test -p aedb-loom-tests --release --target-dir target/loom

step "fuzz every decoder (bounded)"
AEDB_FUZZ_SECONDS="${AEDB_FUZZ_SECONDS:-10}" bash scripts/fuzz.sh

step "restore drill (security runbook section 4)"
bash scripts/restore-drill.sh

step "benchmarks compile"
cargo check -p aedb-benches --benches

echo
echo "all aedb tests passed"
