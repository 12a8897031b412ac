#!/usr/bin/env bash
# The peer comparison in one command: aedb against redb, SQLite, fjall and RocksDB, every
# workload against every engine in one run (benches/benches/peers.rs), so the ratios are
# comparable on a noisy machine. Figures are recorded in benches/RESULTS.md ("Peer
# comparison").
#
# What it does:
#   1. installs RocksDB's db_bench (Debian package rocksdb-tools) when it is missing, with
#      sudo only when not root; if that fails, the RocksDB column says "not run";
#   2. builds the bench in the release (bench) profile;
#   3. prints the machine (nproc, kernel, CPU, disk) and its load (uptime);
#   4. runs every workload against every engine and prints the markdown tables and the
#      aedb ÷ peer ratios;
#   5. prints the load again, and deletes the data directory it made.
# The whole output is also kept in $CARGO_TARGET_DIR/peers-report.txt (default
# target/peers-report.txt).
#
# Knobs (environment; the defaults run in under 10 minutes on 2 cores once built):
#   AEDB_PEERS_COMMITS     durable commits per run, split over the committers (default 20000)
#   AEDB_PEERS_COMMIT_SECS time cap of one in-process commit run (default 15)
#   AEDB_PEERS_COMMITTERS  committer thread counts (default 1,64,256)
#   AEDB_PEERS_KEYS        preloaded keys for reads and scans (default 1000000; 16000000 for
#                          the large set, which needs about 6 GB of disk per engine in turn)
#   AEDB_PEERS_READS       point reads per run (default 2000000)
#   AEDB_PEERS_SCANS       scans per run (default 200000)
#   AEDB_PEERS_SCAN_LEN    entries per scan (default 100)
#   AEDB_PEERS_READERS     reader thread counts (default 1,2)
#   AEDB_PEERS_CACHE_MB    cache of every engine (default 128): aedb's block cache, redb,
#                          SQLite, fjall and RocksDB (db_bench --cache_size)
#   AEDB_PEERS_AEDB_BLOCK  aedb's run-file block size in bytes (default 4096, as db_bench's)
#   AEDB_PEERS_TABLES      where aedb and RocksDB keep index and filter blocks: default (each
#                          engine's own: aedb charges them to its cache, db_bench does not),
#                          outside (both outside the cache) or inside (both in it)
#   AEDB_PEERS_ENGINES     subset of aedb,redb,sqlite,fjall,rocksdb
#   AEDB_PEERS_WORKLOADS   subset of commits,reads,scans
#   AEDB_PEERS_BASE        where the data directory is made (default ./bench-data)
#   AEDB_PEERS_DB_BENCH    db_bench to use (default /usr/bin/db_bench)
# On a shared machine run it as `nice -n 15 bash scripts/peers.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
mkdir -p "$target"
log="$target/peers-report.txt"
exec > >(tee "$log") 2>&1

step() { printf '\n==> %s\n' "$*"; }

step "RocksDB db_bench"
db_bench="${AEDB_PEERS_DB_BENCH:-/usr/bin/db_bench}"
if [ ! -x "$db_bench" ]; then
  echo "installing db_bench (Debian package rocksdb-tools)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo="sudo"
    else
      echo "not root and no sudo: cannot install rocksdb-tools"
    fi
  fi
  if [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; then
    if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
           $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             --no-install-recommends rocksdb-tools; }; then
      echo "installing rocksdb-tools failed"
    fi
  fi
fi
if [ -x "$db_bench" ]; then
  export AEDB_PEERS_DB_BENCH="$db_bench"
  echo "using $db_bench (package $(dpkg-query -W -f='${Package} ${Version}' rocksdb-tools 2>/dev/null || echo 'not from a package'))"
else
  echo "db_bench is not available: the RocksDB column will say not run"
  export AEDB_PEERS_DB_BENCH="$db_bench"
fi

step "build (release)"
cargo bench -p aedb-benches --bench peers --no-run

base="${AEDB_PEERS_BASE:-$PWD/bench-data}"
mkdir -p "$base"
data="$(mktemp -d "$base/peers.XXXXXX")"
trap 'rm -rf "$data"' EXIT
export AEDB_PEERS_DIR="$data"

step "machine"
echo "nproc: $(nproc)"
echo "kernel: $(uname -r)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory: $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
echo "data dir: $data"
df -hT "$data" | tail -n 1
echo "aedb: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
echo "uptime before: $(uptime)"

step "run"
cargo bench -p aedb-benches --bench peers

step "machine load after the run"
echo "nproc: $(nproc)"
echo "uptime after: $(uptime)"
echo "report kept in $log"
