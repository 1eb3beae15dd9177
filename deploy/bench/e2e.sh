#!/usr/bin/env bash
# deploy/bench/e2e.sh — end-to-end throughput of d06 on this machine.
#
#   N=1000000 bash deploy/bench/e2e.sh      # default N = 10,000,000
#
# 1. builds d06 and the bench examples (release);
# 2. creates fresh topics ($PARTITIONS partitions, default 8) and fills a
#    backlog of N events with `d06 simulate --rate 0` (the 2024 campaign at
#    SCALE, default ≈ N / 1.3 M so that the campaign holds N messages);
# 3. (a) the broker's ceiling: examples/bare_consumer reads the same topics
#    (fresh group, d06's librdkafka settings), counting messages, timed from
#    its first message;
#    (c) the ceiling of any exactly-once two-stage design on this broker:
#    examples/bare_copy consumes the same topics and writes every payload,
#    unchanged, to a topic of SHARDS partitions in Kafka transactions of
#    the same size and linger as d06's router, with the source offsets;
#    (b) `d06 run` (fresh group, facts topic, state directory and ClickHouse
#    database, event clock, SHARDS shards (default 2), 1 s flush) until the
#    router (stage 1) has committed all N source messages in its
#    transactions and the shards (stage 2) have applied every fact
#    (`d06_facts_applied_total` = N − dead letters).
# INSTANCES=K (default 1) runs K `d06 run` in one group (each its own
# instance_id, state directory and /metrics port), as a scaled-out
# deployment would; the figures are over all of them (messages and facts
# summed, CPU and peak RSS summed over the processes).
# PERF=SECONDS records a perf profile of d06 (the last instance started;
# cpu-clock) for that long
# from 10 % consumed on and prints the top symbols.
# INVALID_RATE (default 0.005) sets the share of invalid messages, which d06
# sends to the dead-letter topic.
# Prints one summary block (for BENCHMARKS.md) on standard output; progress
# on standard error. Everything the run creates is removed (KEEP=1 keeps it).
# See deploy/bench/common.sh for the other settings.

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N="${N:-10000000}"
SCALE="${SCALE:-$(awk -v n="$N" 'BEGIN { s = n / 1300000; if (s < 0.05) s = 0.05; printf "%.2f", s }')}"
SAMPLE_SECS="${SAMPLE_SECS:-0.2}"
INVALID_RATE="${INVALID_RATE:-0.005}"   # share of invalid messages (dead letters)

build --example bare_consumer --example bare_copy
new_run
INSTANCES="${INSTANCES:-1}"
CONFIGS=()
PORTS=()
for i in $(seq 1 "$INSTANCES"); do
    write_config "$WORK/d06-$i.toml" event 1000 false
    sed -i -e "s|^group_id = .*|&\ninstance_id = \"bench-$i\"|" -e "s|^state_dir = .*|state_dir = \"$WORK/state-$i\"|" \
        "$WORK/d06-$i.toml"
    CONFIGS+=("$WORK/d06-$i.toml")
    PORTS+=("$HTTP_PORT")
done
MACHINE="$(machine)"

log "filling a backlog of $N events: d06 simulate --rate 0 --limit $N --scale $SCALE --invalid-rate $INVALID_RATE"
"$BIN" simulate --config "${CONFIGS[0]}" --rate 0 --limit "$N" --scale "$SCALE" --invalid-rate "$INVALID_RATE" \
    >"$WORK/simulate.txt"
cat "$WORK/simulate.txt" >&2
acked="$(awk '/^acked/ { print $2 }' "$WORK/simulate.txt" | tr -d ,)"
[ "$acked" = "$N" ] || die "the backlog holds $acked messages, not $N (raise SCALE)"

references # sets bare, bare_rate, copy, copy_rate

log "(b) d06 run ($INSTANCES instance(s))"
for i in "${!CONFIGS[@]}"; do
    HTTP_PORT="${PORTS[$i]}"
    start_d06 "${CONFIGS[$i]}" "$WORK/d06-$((i + 1)).log"
done
launched="$(date +%s.%N)"
# Sums over every instance: CPU seconds and a /proc status field (kB).
cpu_all() { local p; for p in "${D06_PIDS[@]}"; do cpu_seconds "$p"; done | awk '{ s += $1 } END { print s }'; }
status_all() { local p; for p in "${D06_PIDS[@]}"; do proc_status "$p" "$1"; done | awk '{ s += $1 } END { print s }'; }
samples="$WORK/samples.tsv"   # unix time, consumed, RSS kB, CPU s, facts applied
done_at=""
perf_pid=""
settled_since=""
last_applied=""
while :; do
    consumed="$(metric d06_messages_consumed_total "${PORTS[@]}")"
    for i in "${!D06_PIDS[@]}"; do
        kill -0 "${D06_PIDS[$i]}" 2>/dev/null || { tail -30 "$WORK/d06-$((i + 1)).log" >&2; die "d06 $((i + 1)) exited"; }
    done
    # PERF=SECONDS: a cpu-clock profile of d06 from 10 % consumed on.
    if [ -n "${PERF:-}" ] && [ -z "$perf_pid" ] && [ "${consumed:-0}" -ge $((N / 10)) ]; then
        perf record -e cpu-clock -F 999 -g -p "$D06_PID" -o "$WORK/perf.data" -- sleep "$PERF" >/dev/null 2>&1 &
        perf_pid=$!
        CLEANUP_PIDS+=("$perf_pid")
    fi
    applied="$(metric d06_facts_applied_total "${PORTS[@]}")"
    now="$(date +%s.%N)"
    printf '%s\t%s\t%s\t%s\t%s\n' "$now" "$consumed" "$(status_all VmRSS)" "$(cpu_all)" "$applied" >>"$samples"
    # Two stages: the router has committed every source message, and the shards
    # have applied every fact it wrote (N minus the dead letters)...
    rejected_now="$(metric d06_messages_rejected_total "${PORTS[@]}")"
    if [ -z "$settled_since" ] && [ "${consumed:-0}" -ge "$N" ] && [ "${applied:-0}" -ge $((N - ${rejected_now:-0})) ] &&
        [ "$(committed)" -ge "$N" ]; then
        settled_since="$now"
    fi
    # ...and, with several instances, no shard is still applying: a shard
    # that moved is rebuilt from the facts topic and applies facts again, so
    # the count can pass N before the last fact is applied. Done is the
    # first sample that shows the final count (unchanged for 3 s).
    [ "$applied" != "$last_applied" ] && [ -n "$settled_since" ] && settled_since="$now"
    last_applied="$applied"
    if [ -n "$settled_since" ] && awk -v a="$settled_since" -v b="$now" 'BEGIN { exit !(b - a >= 3) }'; then
        done_at="$(awk -F'\t' -v f="$applied" '$5 == f { print $1; exit }' "$samples")"
        break
    fi
    sleep "$SAMPLE_SECS"
done
[ -n "$perf_pid" ] && wait "$perf_pid"
hwm="$(status_all VmHWM)"
cpu="$(cpu_all)"
for port in "${PORTS[@]}"; do curl -fsS "http://127.0.0.1:$port/metrics" || true; done >"$WORK/metrics.txt"
dups="$(metric d06_duplicates_ignored_total "${PORTS[@]}")"
rejected="$(metric d06_messages_rejected_total "${PORTS[@]}")"
subjects="$(metric d06_state_subjects "${PORTS[@]}")"
stop_d06
rows="$(curl -fsS "$CLICKHOUSE" --data-binary "SELECT count() FROM \`$DATABASE\`.coverage_shard_daily")"
writes="$(awk '$1 ~ /^d06_sink_write_seconds_count/ { c += $2 } $1 ~ /^d06_sink_write_seconds_sum/ { s += $2 } END { printf "%d ClickHouse writes, mean %.3f s", c, s / c }' "$WORK/metrics.txt")"
checkpoints="$(awk '$1 == "d06_checkpoint_seconds_count" { c += $2 } $1 == "d06_checkpoint_seconds_sum" { s += $2 } END { printf "%d checkpoints, mean %.3f s", c, s / c }' "$WORK/metrics.txt")"
# Consumption starts when the group hands d06 its partitions (the last "partition assigned" of any instance).
assigned_ts="$(sed 's/\x1b\[[0-9;]*m//g' "$WORK"/d06-*.log | awk '/partition assigned/ && $1 > t { t = $1 } END { print t }')"
assigned="$(date -d "$assigned_ts" +%s.%N)"

# Steady rate: consumed between 10 % and 90 % of N, interpolated between samples.
steady="$(awk -v n="$N" -F'\t' '
    function at(level,   i) { for (i = 2; i <= k; i++) if (c[i] >= level) return t[i-1] + (t[i] - t[i-1]) * (level - c[i-1]) / (c[i] - c[i-1]); return t[k] }
    { k++; t[k] = $1; c[k] = $2 }
    END { a = at(0.1 * n); b = at(0.9 * n); printf "%.0f", 0.8 * n / (b - a) }' "$samples")"
e2e="$(awk -v n="$N" -v a="$assigned" -v b="$done_at" 'BEGIN { printf "%.0f", n / (b - a) }')"
span() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

cat <<EOF
== d06 end-to-end, $N events (invalid rate $INVALID_RATE), $INSTANCES instance(s) ==
machine: $MACHINE
backlog: $(head -1 "$WORK/simulate.txt")
producer: $(sed -n 2p "$WORK/simulate.txt")
(a) $bare
(c) $copy
    bare copy / bare consumer: $(awk -v a="$copy_rate" -v b="$bare_rate" 'BEGIN { printf "%.2f", a / b }')
(b) d06 run: partitions assigned $(span "$launched" "$assigned") s after launch (group join); all $N committed $(span "$assigned" "$done_at") s after that
    end to end (assignment → all committed):  $e2e events/s
    steady (10 % → 90 % consumed):            $steady events/s
    d06 / bare consumer:                      $(awk -v a="$e2e" -v b="$bare_rate" 'BEGIN { printf "%.2f", a / b }') (steady $(awk -v a="$steady" -v b="$bare_rate" 'BEGIN { printf "%.2f", a / b }'))
    d06 / bare copy:                          $(awk -v a="$e2e" -v b="$copy_rate" 'BEGIN { printf "%.2f", a / b }')
    peak RSS (VmHWM, summed over instances): $((hwm / 1024)) MiB; CPU $cpu s (user + system, all instances) from launch to 3 s after the last fact applied
    subjects in state $subjects, duplicates ignored $dups, dead letters $rejected, coverage_shard_daily rows $rows
    facts applied $applied (N − dead letters = $((N - rejected)); more = re-applied by shards rebuilt after moving)
    $writes; $checkpoints
EOF
if [ -n "$perf_pid" ]; then
    echo "profile (perf, cpu-clock, $PERF s from 10 % consumed; self time by thread and symbol):"
    perf report -i "$WORK/perf.data" --stdio --no-children --sort comm,sym --percent-limit 1.5 2>/dev/null |
        grep -E '^ +[0-9]' | head -40
fi
