# shellcheck shell=bash
# Shared by e2e.sh and latency.sh: build, fresh topics/group/state/database,
# start and watch one d06, clean up everything the run created.
#
# Environment:
#   D06_BENCH_KAFKA       broker               (127.0.0.1:9092)
#   D06_BENCH_CLICKHOUSE  ClickHouse HTTP URL  (http://127.0.0.1:8123)
#   PARTITIONS            partitions per topic (8)
#   KAFKA_PROPERTIES      TOML lines for d06's [kafka.properties], e.g. '"fetch.wait.max.ms" = "50"'
#   KEEP=1                keep the work directory, topics and database
#   PROFILE               release (default) or dev (opt-level 1; where a
#                         release build does not fit, figures not comparable)
#   D06_BENCH_BIN         the d06 binary to run instead of the one built
#                         (a copy of an earlier build, to compare two
#                         versions on one broker in one hour)

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/../.." && pwd)"
KAFKA="${D06_BENCH_KAFKA:-127.0.0.1:9092}"
CLICKHOUSE="${D06_BENCH_CLICKHOUSE:-http://127.0.0.1:8123}"
PARTITIONS="${PARTITIONS:-8}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
PROFILE="${PROFILE:-release}"
case "$PROFILE" in
    release) PROFILE_DIR=release ;;
    dev) PROFILE_DIR=debug ;;
    *) echo "PROFILE must be release or dev" >&2; exit 2 ;;
esac
BIN="${D06_BENCH_BIN:-$TARGET_DIR/$PROFILE_DIR/d06}"
EXAMPLES="$TARGET_DIR/$PROFILE_DIR/examples"
export D06_HMAC_KEY="${D06_HMAC_KEY:-d06-bench-key-0123456789abcdef}"

D06_PID=""
D06_PIDS=()
CLEANUP_PIDS=()

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# build [--example NAME ...]: the release binary and the examples named.
build() {
    log "building $PROFILE (d06 and examples: kafka_admin $*)"
    (cd "$REPO" && cargo build --profile "$PROFILE" -p d06 --bin d06 --example kafka_admin "$@")
}

machine() {
    printf 'date %s; %s; nproc %s; %s; load %s\n' "$(date -u +%FT%TZ)" \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$(nproc)" \
        "$(grep MemTotal /proc/meminfo | tr -s ' ')" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# new_run: a run id, a work directory and fresh topics.
new_run() {
    RUN_ID="bench$(date +%s)_$$"
    WORK="$(mktemp -d "/tmp/d06-$RUN_ID.XXXX")"
    TOPIC_CCCD="$RUN_ID.cccd"
    TOPIC_VNEID="$RUN_ID.vneid"
    TOPIC_SIM="$RUN_ID.sim"
    TOPIC_HOTLINE="$RUN_ID.hotline"
    TOPIC_DEAD="$RUN_ID.dead"
    SOURCES=("$TOPIC_CCCD" "$TOPIC_VNEID" "$TOPIC_SIM" "$TOPIC_HOTLINE")
    DATABASE="d06_$RUN_ID"
    "$EXAMPLES/kafka_admin" create "$KAFKA" "$PARTITIONS" "${SOURCES[@]}" "$TOPIC_DEAD" ||
        die "cannot create topics on $KAFKA (is the broker running? bash deploy/local/start.sh)"
    TOPICS_CREATED=1
    log "run $RUN_ID: topics ${SOURCES[*]} ($PARTITIONS partitions), work dir $WORK"
}

# write_config FILE CLOCK FLUSH_MS COMMUNE_METRICS [PLAN_FILE]
write_config() {
    local file="$1" clock="$2" flush="$3" communes="$4" plan="${5:-}"
    HTTP_PORT="$(free_port)"
    cat >"$file" <<EOF
[kafka]
brokers = "$KAFKA"
group_id = "$RUN_ID.group"
lag_interval_ms = 1000
max_batch_messages = ${MAX_BATCH:-20000}
linger_ms = ${LINGER_MS:-50}
[kafka.topics]
cccd = "$TOPIC_CCCD"
vneid = "$TOPIC_VNEID"
sim = "$TOPIC_SIM"
hotline = "$TOPIC_HOTLINE"
dead_letter = "$TOPIC_DEAD"
facts = "$RUN_ID.facts"
[kafka.properties]
${KAFKA_PROPERTIES:-}
[clickhouse]
url = "$CLICKHOUSE"
database = "$DATABASE"
[http]
listen = "127.0.0.1:$HTTP_PORT"
commune_metrics = $communes
[pipeline]
state_dir = "$WORK/state"
shards = ${SHARDS:-2}
flush_interval_ms = $flush
clock = "$clock"
snapshot_log_bytes = ${SNAPSHOT_LOG_BYTES:-67108864}
EOF
    if [ -n "$plan" ]; then
        printf '[plan]\nfile = "%s"\n' "$plan" >>"$file"
    fi
}

# start_d06 CONFIG [LOG]: starts `d06 run` in the background (log in LOG,
# default $WORK/d06.log), sets D06_PID, waits for /healthz on $HTTP_PORT.
# Every process started is stopped on exit.
start_d06() {
    local log="${2:-$WORK/d06.log}"
    RUST_LOG="${RUST_LOG:-info}" "$BIN" run --config "$1" >"$log" 2>&1 &
    D06_PID=$!
    D06_PIDS+=("$D06_PID")
    D06_STARTED=$(date +%s.%N)
    export D06_STARTED
    for _ in $(seq 600); do
        if curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$D06_PID" 2>/dev/null || { tail -20 "$log" >&2; die "d06 exited at start-up"; }
        sleep 0.1
    done
    tail -20 "$log" >&2
    die "d06 not healthy in 60 s"
}

# metric NAME [PORT...]: the sum of every series of NAME on the /metrics of
# d06 at each PORT (default $HTTP_PORT).
metric() {
    local name="$1" port
    shift
    for port in "${@:-$HTTP_PORT}"; do
        curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null || true
    done | awk -v n="$name" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.0f\n", s }'
}

# committed: the group's committed offsets summed over the source topics
# (offsets are dense from 0, so this is the number of messages committed).
committed() {
    "$EXAMPLES/kafka_admin" offsets "$KAFKA" "$RUN_ID.group" "${SOURCES[@]}" | awk '{print $2}'
}

# proc_status PID FIELD: e.g. VmHWM in kB.
proc_status() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# cpu_seconds PID: user + system CPU time so far.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

# stop_d06: stops every d06 started (SIGTERM, SIGKILL after 30 s).
stop_d06() {
    local pid
    for pid in "${D06_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 300); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
            wait "$pid" 2>/dev/null || true
        fi
    done
    D06_PIDS=()
    D06_PID=""
}

cleanup() {
    local rc=$?
    stop_d06
    for p in "${CLEANUP_PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
    done
    if [ "${KEEP:-0}" = 1 ]; then
        log "KEEP=1: kept $WORK, topics $RUN_ID.*, database $DATABASE"
    else
        if [ -n "${TOPICS_CREATED:-}" ]; then
            "$EXAMPLES/kafka_admin" delete "$KAFKA" "${SOURCES[@]}" "$TOPIC_DEAD" "$RUN_ID.facts" "$RUN_ID.copy" \
                >/dev/null 2>&1 || true
        fi
        if [ -n "${DATABASE:-}" ]; then
            curl -fsS "$CLICKHOUSE" --data-binary "DROP DATABASE IF EXISTS \`$DATABASE\`" >/dev/null 2>&1 || true
        fi
        [ -n "${WORK:-}" ] && rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# references: the same run's ceilings, on the backlog of N messages in
# SOURCES: (a) examples/bare_consumer reads it (the broker's), (c)
# examples/bare_copy copies it in transactions into $RUN_ID.copy and does
# nothing else (the two-stage path's). Sets bare, bare_rate, copy and
# copy_rate. Needs `build --example bare_consumer --example bare_copy`.
references() {
    reference_consumer
    reference_copy
}

# reference_consumer: (a) alone; sets bare, bare_rate.
reference_consumer() {
    log "(a) bare consumer"
    bare="$("$EXAMPLES/bare_consumer" "$KAFKA" "$N" "${SOURCES[@]}")"
    echo "$bare" >&2
    bare_rate="$(sed -E 's/.*: ([0-9]+) msgs\/s.*/\1/' <<<"$bare")"
}

# reference_copy: (c) alone; sets copy, copy_rate.
reference_copy() {
    log "(c) bare transactional copy"
    "$EXAMPLES/kafka_admin" create "$KAFKA" "${SHARDS:-2}" "$RUN_ID.copy" || die "cannot create $RUN_ID.copy"
    copy="$("$EXAMPLES/bare_copy" "$KAFKA" "$N" "$RUN_ID.copy" "${SHARDS:-2}" "${MAX_BATCH:-20000}" "${LINGER_MS:-50}" "${SOURCES[@]}")"
    echo "$copy" >&2
    copy_rate="$(sed -E 's/.*: ([0-9]+) msgs\/s.*/\1/' <<<"$copy")"
}
