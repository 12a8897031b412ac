#!/usr/bin/env bash
# Bounded cargo-fuzz runs of every target `cargo fuzz list` reports (fuzz/Cargo.toml).
#
#   AEDB_FUZZ_SECONDS   seconds per target (default 15; raise for campaigns)
#   AEDB_FUZZ_TARGETS   space-separated subset (default: all)
#   AEDB_FUZZ_JOBS      targets fuzzed at once (default: number of cores, at most 2)
#
# Wall time is about one build plus ceil(targets / jobs) x (seconds + ~1 s).
#
# Each target starts from its checked-in seed corpus fuzz/corpus/<target>/ (regenerate
# with `cd fuzz && cargo run --release --example gen_corpus`, see fuzz/README.md) and
# never writes to it: libFuzzer writes new inputs only into the first corpus directory
# it is given, a fresh scratch directory fuzz/target/corpus-run/<target>/ (ignored by
# git); the seed directory is passed second, read-only. Crashes land in
# fuzz/artifacts/<target>/ (also ignored) and fail the run.
#
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

seconds="${AEDB_FUZZ_SECONDS:-15}"
cores="$(nproc 2>/dev/null || echo 1)"
jobs="${AEDB_FUZZ_JOBS:-$((cores < 2 ? cores : 2))}"
export RUSTC_BOOTSTRAP=1
targets="${AEDB_FUZZ_TARGETS:-$(cd fuzz && cargo fuzz list)}"

for t in $targets; do
  if [ -z "$(ls -A "fuzz/corpus/$t" 2>/dev/null)" ]; then
    echo "fuzz: no seed corpus in fuzz/corpus/$t; run the generator (see fuzz/README.md)" >&2
    exit 1
  fi
done
seeds_before="$(find fuzz/corpus -type f -print0 | sort -z | xargs -0 sha256sum)"

# One build of every target (one cargo invocation, so all cores are used); the runs
# below then find everything up to date.
echo "==> building fuzz targets"
(cd fuzz && cargo fuzz build)

logs="fuzz/target/corpus-run"
mkdir -p "$logs"
run_one() {
  local t="$1"
  rm -rf "$logs/$t"
  mkdir -p "$logs/$t"
  (cd fuzz && cargo fuzz run "$t" "target/corpus-run/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048) >"$logs/$t.log" 2>&1
}

echo "==> fuzzing $(echo $targets | wc -w) targets for ${seconds}s each, $jobs at a time"
failed=""
reap() {
  local pid="$1" t="$2"
  if wait "$pid"; then
    printf '  %-20s %s\n' "$t" "$(grep -E '^Done [0-9]+ runs' "$logs/$t.log" | tail -n 1)"
  else
    echo "  $t FAILED; last lines of $logs/$t.log:" >&2
    tail -n 40 "$logs/$t.log" >&2
    failed="$failed $t"
  fi
}
pids=()
names=()
for t in $targets; do
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    reap "${pids[0]}" "${names[0]}"
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
  run_one "$t" &
  pids+=("$!")
  names+=("$t")
done
for i in "${!pids[@]}"; do
  reap "${pids[$i]}" "${names[$i]}"
done

seeds_after="$(find fuzz/corpus -type f -print0 | sort -z | xargs -0 sha256sum)"
if [ "$seeds_before" != "$seeds_after" ]; then
  echo "fuzz: the checked-in seed corpus changed during the run" >&2
  diff <(echo "$seeds_before") <(echo "$seeds_after") >&2 || true
  exit 1
fi
if [ -n "$failed" ]; then
  echo "fuzz: failing targets:$failed (inputs in fuzz/artifacts/<target>/)" >&2
  exit 1
fi
echo "fuzz: all targets ran clean"
