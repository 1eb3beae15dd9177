#!/usr/bin/env bash
# deploy/bench/national.sh — a backlog of the national simulator replayed
# through `d06 run` into ClickHouse.
#
#   N=200000 bash deploy/bench/national.sh       # default N = 10,000,000
#
# 1. builds d06 ($PROFILE, default release);
# 2. creates fresh topics ($PARTITIONS partitions, default 8) and fills a
#    backlog of N events with `d06 simulate --scope national --rate 0`
#    (every province, GEOGRAPHY pre2025 = 63 or post2025 = 34, at SCALE,
#    default ≈ N / 144 M so that the 90-day national campaign holds N
#    messages, at least 0.01); times the producer;
# 3. reads it with examples/bare_consumer (the broker's ceiling) and
#    copies it with examples/bare_copy (the two-stage ceiling),
#    as deploy/bench/e2e.sh does, in the same run;
# 4. replays it with `d06 run` (fresh group, facts topic, state directory and
#    ClickHouse database, event clock, SHARDS shards (default 2), 1 s
#    flush) until the router has committed all N source messages and the
#    shards have applied every fact (`d06_facts_applied_total` = N − dead
#    letters), sampling RSS; then reports time, events/s, peak RSS and disk
#    (the state directory, the ClickHouse database's parts).
#
# COPY=0 skips (c): the copy is a third copy of the backlog on the broker
# (tansu 0.6 holds every message in memory). BROKER_PID (default: the local
# broker's from deploy/local, unless D06_BENCH_KAFKA names another) is
# sampled for the broker's RSS before the backlog, after it and at the end
# of the replay.
# Compression is the operator's: KAFKA_PROPERTIES='"compression.type" =
# "zstd"' makes the simulator and d06's facts producer compress their
# batches (the broker keeps them as sent).
#
# TRACK=all (the default): the deployment tracks every province, each with
# the simulated plan `d06 simulate --scope national --write-plans` writes
# (Bình Phước's 2024 plan scaled by population and SCALE), so every valid
# event is aggregated. TRACK=one: Bình Phước only (or its Đồng Nai area
# post-2025); the other provinces' events are dead letters (unknown_area).
# Prints one summary block on standard output; progress on standard error.
# Everything the run creates is removed (KEEP=1 keeps it). See
# deploy/bench/common.sh for the other settings.

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N="${N:-10000000}"
SCALE="${SCALE:-$(awk -v n="$N" 'BEGIN { s = n * 1.05 / 144000000; if (s < 0.01) s = 0.01; printf "%.4f", s }')}"
GEOGRAPHY="${GEOGRAPHY:-pre2025}"
TRACK="${TRACK:-all}"
SAMPLE_SECS="${SAMPLE_SECS:-0.5}"
COPY="${COPY:-1}"
BROKER_PID="${BROKER_PID:-}"
if [ -z "$BROKER_PID" ] && [ -z "${D06_BENCH_KAFKA:-}" ]; then
    BROKER_PID="$(cat "${D06_LOCAL_DIR:-$REPO/.d06/local}/kafka.pid" 2>/dev/null || true)"
fi
# broker_rss: the broker's resident memory now, or "?" where it is not local.
broker_rss() {
    if [ -n "$BROKER_PID" ] && [ -r "/proc/$BROKER_PID/status" ]; then
        echo "$(($(proc_status "$BROKER_PID" VmRSS) / 1024)) MiB"
    else
        echo "?"
    fi
}

build --example bare_consumer --example bare_copy
new_run
write_config "$WORK/d06.toml" event "${FLUSH_MS:-1000}" false
case "$TRACK" in
    one) printf '[contract]\ngeography = "%s"\n' "$GEOGRAPHY" >>"$WORK/d06.toml" ;;
    all)
        # The simulator reads the geography from a config: the run's, with it.
        { cat "$WORK/d06.toml"; printf '[contract]\ngeography = "%s"\n' "$GEOGRAPHY"; } >"$WORK/sim.toml"
        "$BIN" simulate --config "$WORK/sim.toml" --scope national --scale "$SCALE" --write-plans "$WORK/plans" \
            >>"$WORK/d06.toml" || die "writing the provinces' plans"
        ;;
    *) die "TRACK is one or all, not $TRACK" ;;
esac
MACHINE="$(machine)"

broker_before="$(broker_rss)"
log "filling a backlog of $N national events: d06 simulate --scope national --rate 0 --limit $N --scale $SCALE"
sim_start="$(date +%s.%N)"
"$BIN" simulate --config "$WORK/d06.toml" --scope national --rate 0 --limit "$N" --scale "$SCALE" \
    >"$WORK/simulate.txt"
sim_end="$(date +%s.%N)"
cat "$WORK/simulate.txt" >&2
acked="$(awk '/^acked/ { print $2 }' "$WORK/simulate.txt" | tr -d ,)"
[ "$acked" = "$N" ] || die "the backlog holds $acked messages, not $N (raise SCALE)"

broker_backlog="$(broker_rss)"

reference_consumer # sets bare, bare_rate
copy_rate=""
if [ "$COPY" != 0 ]; then
    reference_copy # sets copy, copy_rate
fi

log "(b) d06 run"
start_d06 "$WORK/d06.toml"
launched="$(date +%s.%N)"
samples="$WORK/samples.tsv" # unix time, consumed, RSS kB, CPU s
done_at=""
while :; do
    consumed="$(metric d06_messages_consumed_total)"
    kill -0 "$D06_PID" 2>/dev/null || { tail -30 "$WORK/d06.log" >&2; die "d06 exited"; }
    printf '%s\t%s\t%s\t%s\n' "$(date +%s.%N)" "$consumed" "$(proc_status "$D06_PID" VmRSS)" "$(cpu_seconds "$D06_PID")" >>"$samples"
    applied="$(metric d06_facts_applied_total)"
    rejected_now="$(metric d06_messages_rejected_total)"
    if [ "${consumed:-0}" -ge "$N" ] && [ "${applied:-0}" -ge $((N - ${rejected_now:-0})) ] && [ "$(committed)" -ge "$N" ]; then
        done_at="$(date +%s.%N)"
        break
    fi
    sleep "$SAMPLE_SECS"
done
hwm="$(proc_status "$D06_PID" VmHWM)"
broker_end="$(broker_rss)"
cpu="$(cpu_seconds "$D06_PID")"
# d06_state_subjects is set by a flush: wait for one that began after the
# last fact was applied (the gauge is in whole seconds here; at most 60 s).
for _ in $(seq 1 120); do
    flushed="$(metric d06_last_flush_timestamp_seconds)"
    awk -v f="${flushed:-0}" -v d="$done_at" 'BEGIN { exit !(f > d + 1) }' && break
    sleep 0.5
done
curl -fsS "http://127.0.0.1:$HTTP_PORT/metrics" >"$WORK/metrics.txt" || true
applied="$(metric d06_facts_applied_total)"
dups="$(metric d06_duplicates_ignored_total)"
rejected="$(metric d06_messages_rejected_total)"
subjects="$(metric d06_state_subjects)"
stop_d06
state_bytes="$(du -sb "$WORK/state" | cut -f1)"
ch_bytes="$(curl -fsS "$CLICKHOUSE" --data-binary "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = '$DATABASE' AND active")"
rows="$(curl -fsS "$CLICKHOUSE" --data-binary "SELECT count() FROM \`$DATABASE\`.coverage_shard_daily")"
# Rows written over all flushes, per table (each flush's rows; ClickHouse keeps the newest version).
written() { awk -v t="table=\"$1\"" 'index($0, "d06_sink_rows_written_total{") == 1 && index($0, t) { printf "%.0f", $NF }' "$WORK/metrics.txt"; }
dead_rows="$(curl -fsS "$CLICKHOUSE" --data-binary "SELECT count() FROM \`$DATABASE\`.dead_letters")"
reasons="$(curl -fsS "$CLICKHOUSE" --data-binary "SELECT reason, count() FROM \`$DATABASE\`.dead_letters GROUP BY reason ORDER BY count() DESC FORMAT TSV" | awk '{ printf "%s%s %s", sep, $1, $2; sep = ", " }')"
assigned_ts="$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/d06.log" | awk '/partition assigned/ { t = $1 } END { print t }')"
assigned="$(date -d "$assigned_ts" +%s.%N)"
span() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rate() { awk -v n="$N" -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", n / (b - a) }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

cat <<EOF
== d06 national replay, $N events ($GEOGRAPHY geography, tracking $TRACK, scale $SCALE, profile $PROFILE) ==
machine: $MACHINE
backlog: $(head -1 "$WORK/simulate.txt")
producer: $(sed -n 2p "$WORK/simulate.txt"); $(span "$sim_start" "$sim_end") s, $(rate "$sim_start" "$sim_end") events/s
d06 run: partitions assigned $(span "$launched" "$assigned") s after launch; all $N committed $(span "$assigned" "$done_at") s after that
    end to end (assignment → all committed): $(rate "$assigned" "$done_at") events/s
    same run: (a) bare consumer $bare_rate msgs/s, (c) bare transactional copy ${copy_rate:+$copy_rate msgs/s}${copy_rate:-not run (COPY=0)}; d06 / (a) $(awk -v n="$N" -v a="$assigned" -v b="$done_at" -v r="$bare_rate" 'BEGIN { printf "%.3f", n / (b - a) / r }'), d06 / (c) $(awk -v n="$N" -v a="$assigned" -v b="$done_at" -v r="${copy_rate:-0}" 'BEGIN { if (r > 0) printf "%.3f", n / (b - a) / r; else printf "—" }')
    peak RSS (VmHWM): $((hwm / 1024)) MiB; CPU $cpu s (user + system)
    facts applied $applied (subjects in state $subjects, duplicates ignored $dups); dead letters $rejected ($reasons)
    broker RSS: $broker_before before the backlog, $broker_backlog with it, $broker_end at the end (with the facts topic$([ "$COPY" != 0 ] && echo " and the copy"))
    disk: state directory $(mib "$state_bytes"); ClickHouse database $(mib "${ch_bytes:-0}") (coverage_shard_daily rows $rows, dead_letters rows $dead_rows)
    rows written by all flushes: coverage_shard_daily $(written coverage_shard_daily), coverage_shard_recent $(written coverage_shard_recent)
EOF
