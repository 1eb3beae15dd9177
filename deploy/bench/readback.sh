#!/usr/bin/env bash
# The read-back's cost as the shard rows grow (BENCHMARKS.md, "Reading the
# figures back"): for each SHARDSxDAYS case, a fresh database filled through
# d06's migrations and write path, then `ClickHouseSink::figures` timed.
#
#   bash deploy/bench/readback.sh                      # cases "2x30 2x90 8x30"
#   CASES="16x30" bash deploy/bench/readback.sh
#   ARGS="--post2025" bash deploy/bench/readback.sh    # after the reform
#   ARGS="--communes" bash deploy/bench/readback.sh    # every level read (http.commune_metrics)
#   ARGS="--post2025 --tickets 300000" CASES=64x90 bash deploy/bench/readback.sh  # the hotline too
#
# Needs ClickHouse (bash deploy/local/start.sh clickhouse).
# Environment: D06_BENCH_CLICKHOUSE (http://127.0.0.1:8123), KEEP=1 keeps
# the databases.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLICKHOUSE="${D06_BENCH_CLICKHOUSE:-http://127.0.0.1:8123}"
CASES="${CASES:-2x30 2x90 8x30}"
(cd "$REPO" && cargo build --release --locked --example readback)
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/examples/readback"
printf 'date %s; %s; nproc %s\n' "$(date -u +%FT%TZ)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$(nproc)"
failed=0
for c in $CASES; do
    db="d06_readback_$$_${c/x/_}"
    # A case that fails (a read-back past the sink's timeout) still has its
    # database dropped: tens of millions of rows otherwise stay behind.
    # shellcheck disable=SC2086 # ARGS holds several flags
    "$BIN" --clickhouse "$CLICKHOUSE" --database "$db" --shards "${c%x*}" --days "${c#*x}" ${ARGS:-} || failed=1
    if [ "${KEEP:-0}" != 1 ]; then
        curl -sS "$CLICKHOUSE/" --data-binary "DROP DATABASE IF EXISTS $db" >/dev/null
    fi
done
exit "$failed"
