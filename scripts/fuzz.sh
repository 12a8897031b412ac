#!/usr/bin/env bash
# Bounded cargo-fuzz runs of every decoder target (see fuzz/Cargo.toml for the list).
#
#   AEDB_FUZZ_SECONDS   seconds per target (default 15; raise for campaigns)
#   AEDB_FUZZ_TARGETS   space-separated subset (default: all)
#
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

seconds="${AEDB_FUZZ_SECONDS:-15}"
targets="${AEDB_FUZZ_TARGETS:-$(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list)}"
export RUSTC_BOOTSTRAP=1
for t in $targets; do
  echo "==> fuzz $t for ${seconds}s"
  mkdir -p "fuzz/corpus/$t"
  (cd fuzz && cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tail -n 3)
done
echo "fuzz: all targets ran clean"
