#!/usr/bin/env bash
# deploy/bench/latency.sh — produce→visible latency of d06 under a live stream.
#
#   bash deploy/bench/latency.sh                  # 5,000 msgs/s for 60 s, 1 s flush
#   FLUSH_MS=250 bash deploy/bench/latency.sh
#   (also RATE, DURATION, INVALID_RATE, MARKER_COMMUNE, KAFKA_PROPERTIES; see common.sh)
#
# 1. builds d06 and the bench examples (release), creates fresh topics and
#    starts `d06 run` (wall clock, fresh group/state/database,
#    commune_metrics on, FLUSH_MS flush interval) with a copy of the 2024
#    plan moved so that today is its day 45 (ClickHouse's coverage_daily only
#    has rows for plan days);
# 2. runs `d06 simulate --rate $RATE` for $DURATION s (a live stream: each
#    occurred_at moved to the wall clock, "sim_produced_at_ms" added) with
#    commune $MARKER_COMMUNE excluded, and at the same time
#    examples/latency_probe, which produces one marker event every 100 ms into
#    that commune and polls /metrics (every 50 ms) and coverage_daily in
#    ClickHouse (every 100 ms) until the marker counts show; see the probe's
#    doc comment for the method;
# 3. prints the probe's percentiles, d06's CPU and memory, and what the
#    simulator sent.

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RATE="${RATE:-5000}"
DURATION="${DURATION:-60}"
FLUSH_MS="${FLUSH_MS:-500}"
MARKER_COMMUNE="${MARKER_COMMUNE:-25216}"
INVALID_RATE="${INVALID_RATE:-0.005}"   # share of invalid messages in the stream (dead letters)

build --example latency_probe
new_run
MACHINE="$(machine)"

# The 2024 plan, moved so that today is day 45 of 90 (milestones at days 30, 60, 90).
start="$(date -d "-44 days" +%F)"
sed -e "s/^start = .*/start = $start/" \
    -e "s/^end = .*/end = $(date -d "$start + 89 days" +%F)/" \
    -e "s/2024-05-09/$(date -d "$start + 29 days" +%F)/" \
    -e "s/2024-06-08/$(date -d "$start + 59 days" +%F)/" \
    -e "s/2024-07-08/$(date -d "$start + 89 days" +%F)/" \
    "$REPO/deploy/plans/binh-phuoc-2024.toml" >"$WORK/plan.toml"
write_config "$WORK/d06.toml" wall "$FLUSH_MS" true "$WORK/plan.toml"
start_d06 "$WORK/d06.toml"
# The group join (tansu takes seconds) must be over before anything is measured:
# 200 messages through the whole path prove the assignment is done.
log "warming up: waiting for d06 to join the group"
"$BIN" simulate --config "$WORK/d06.toml" --rate 1000 --limit 200 --seed 1 --exclude-commune "$MARKER_COMMUNE" >/dev/null 2>&1
for _ in $(seq 600); do
    [ "$(metric d06_messages_consumed_total)" -ge 200 ] && break
    sleep 0.1
done
[ "$(metric d06_messages_consumed_total)" -ge 200 ] || die "d06 consumed nothing in 60 s"

cpu0="$(cpu_seconds "$D06_PID")"
t0=$(date +%s.%N)
log "live stream: $RATE msgs/s for $DURATION s, markers in commune $MARKER_COMMUNE"
"$EXAMPLES/latency_probe" --brokers "$KAFKA" --topic "$TOPIC_CCCD" --commune "$MARKER_COMMUNE" \
    --metrics "http://127.0.0.1:$HTTP_PORT/metrics" --clickhouse "$CLICKHOUSE" --database "$DATABASE" \
    --duration "$DURATION" >"$WORK/probe.txt" &
probe=$!
CLEANUP_PIDS+=("$probe")
"$BIN" simulate --config "$WORK/d06.toml" --rate "$RATE" --limit $((RATE * DURATION)) \
    --invalid-rate "$INVALID_RATE" --exclude-commune "$MARKER_COMMUNE" >"$WORK/simulate.txt"
wait "$probe"
t1=$(date +%s.%N)
cpu1="$(cpu_seconds "$D06_PID")"
hwm="$(proc_status "$D06_PID" VmHWM)"

cat <<EOF
== d06 latency: live stream $RATE msgs/s (invalid rate $INVALID_RATE), flush_interval_ms $FLUSH_MS ${KAFKA_PROPERTIES:-} ==
machine: $MACHINE
simulate: $(head -2 "$WORK/simulate.txt" | tr '\n' ' ')
$(cat "$WORK/probe.txt")
d06: CPU $(awk -v a="$cpu0" -v b="$cpu1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f %%", 100 * (b - a) / (e - s) }') of one core over the run; peak RSS $((hwm / 1024)) MiB; flush duration p50 from /metrics below
$(curl -fsS "http://127.0.0.1:$HTTP_PORT/metrics" | grep -E '^d06_flush_seconds_(sum|count)|^d06_sink_write_seconds_(sum|count)|^d06_checkpoint_seconds_(sum|count)')
EOF
