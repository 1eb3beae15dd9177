#!/usr/bin/env bash
# deploy/bench/restart.sh — from SIGKILL to serving again, with a large state.
#
#   N=1000000 bash deploy/bench/restart.sh      # default N = 1,000,000
#
# 1. builds d06 (release by default; PROFILE=dev for the optimised dev
#    profile), creates fresh topics and fills a backlog of N events with
#    `d06 simulate --rate 0` (the 2024 campaign at SCALE ≈ N / 1.3 M);
# 2. runs `d06 run` (event clock, SHARDS shards, default 2) until every
#    source message is committed and every fact applied (held 3 s), and
#    keeps the province's figures from /metrics;
# 3. reference, measured in the same run: a clean stop (SIGTERM) and start,
#    timed to /readyz like the crash below;
# 4. SIGKILL, then `d06 run` again on the same state directory, timed from
#    the launch to: /healthz (the process serves), /readyz 200 (a complete
#    flush since the start), the province's figures on /metrics equal to
#    those kept in step 2 (every instance reads them back from ClickHouse,
#    so this needs no local state), and every shard owned again
#    (`d06_shards_owned` = SHARDS: its store replayed, processing new
#    events; after SIGKILL the group first waits out the dead member's
#    session). The "shard restored" log lines give the snapshot bytes
#    loaded, the facts replayed after them and the slowest shard's time.
#    SNAPSHOT_LOG_BYTES sets `pipeline.snapshot_log_bytes` (default 64 MiB).
# Prints one summary block (for BENCHMARKS.md) on standard output; progress
# on standard error. Everything the run creates is removed (KEEP=1 keeps it).

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

N="${N:-1000000}"
SCALE="${SCALE:-$(awk -v n="$N" 'BEGIN { s = n / 1300000; if (s < 0.05) s = 0.05; printf "%.2f", s }')}"

build
new_run
write_config "$WORK/d06.toml" event 1000 false
MACHINE="$(machine)"

log "filling a backlog of $N events"
"$BIN" simulate --config "$WORK/d06.toml" --rate 0 --limit "$N" --scale "$SCALE" >"$WORK/simulate.txt"
acked="$(awk '/^acked/ { print $2 }' "$WORK/simulate.txt" | tr -d ,)"
[ "$acked" = "$N" ] || die "the backlog holds $acked messages, not $N (raise SCALE)"

# The province's business gauges, sorted: what "serving the same figures" compares.
province() {
    curl -fsS "http://127.0.0.1:$HTTP_PORT/metrics" 2>/dev/null |
        grep -E '^d06_(coverage_covered|coverage_expected|hotline_tickets)\{' | grep 'area_level="province"' | sort
}
# since T: seconds from T to now.
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

log "first run: everything applied"
start_d06 "$WORK/d06.toml" "$WORK/d06-first.log"
last="" held=""
while :; do
    kill -0 "$D06_PID" 2>/dev/null || { tail -30 "$WORK/d06-first.log" >&2; die "d06 exited"; }
    applied="$(metric d06_facts_applied_total)"
    rejected="$(metric d06_messages_rejected_total)"
    if [ "${applied:-0}" -ge $((N - ${rejected:-0})) ] && [ "$(committed)" -ge "$N" ]; then
        [ "$applied" = "$last" ] || held="$(date +%s.%N)"
        last="$applied"
        if awk -v a="$held" -v b="$(date +%s.%N)" 'BEGIN { exit !(b - a >= 3) }'; then break; fi
    fi
    sleep 0.2
done
until curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1; do sleep 0.2; done
sleep 2 # one more flush and read-back of the figures
province >"$WORK/before.txt"
[ -s "$WORK/before.txt" ] || die "no province figures on /metrics"
subjects="$(metric d06_state_subjects)"
state_mb="$(du -sm "$WORK/state" | cut -f1)"

# restart LABEL: starts d06 again on the same state and times it to serving
# (in this shell, not a subshell: D06_PID is the new process afterwards).
restart() {
    local label="$1" launched healthz restored ready same owned
    launched="$(date +%s.%N)"
    start_d06 "$WORK/d06.toml" "$WORK/d06-$label.log"
    healthz="$(since "$launched")"
    ready="" same="" owned=""
    while [ -z "$same" ] || [ -z "$owned" ]; do
        kill -0 "$D06_PID" 2>/dev/null || { tail -30 "$WORK/d06-$label.log" >&2; die "d06 exited after $label"; }
        if [ -z "$ready" ] && curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1; then
            ready="$(since "$launched")"
        fi
        if [ -n "$ready" ] && [ -z "$same" ] && [ "$(province || true)" = "$(cat "$WORK/before.txt")" ]; then
            same="$(since "$launched")"
        fi
        if [ -z "$owned" ] && [ "$(metric d06_shards_owned)" = "${SHARDS:-2}" ]; then
            owned="$(since "$launched")"
        fi
        awk -v a="$launched" -v b="$(date +%s.%N)" 'BEGIN { exit !(b - a > 600) }' && die "$label: not serving the same figures in 600 s"
        sleep 0.1
    done
    restored="$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/d06-$label.log" | { grep 'shard restored' || true; } |
        sed -E 's/.*snapshot_bytes=([0-9]+).*facts=([0-9]+).*elapsed_ms=([0-9]+).*/\1 \2 \3/' |
        awk '{ s += $1; f += $2; if ($3 > m) m = $3 } END { printf "snapshots of %.1f MB loaded, %d facts replayed, slowest shard %.2f s", s / 1e6, f, m / 1000 }')"
    printf '%-8s /healthz %5s s   /readyz %5s s   same province figures %5s s   all shards owned %6s s   (%s)\n' \
        "$label" "$healthz" "$ready" "$same" "$owned" "$restored"
}

log "reference: SIGTERM and start"
stop_d06
restart sigterm >"$WORK/sigterm.txt"
log "SIGKILL and start"
kill -KILL "$D06_PID"
wait "$D06_PID" 2>/dev/null || true
D06_PIDS=()
restart sigkill >"$WORK/sigkill.txt"
stop_d06
clean="$(cat "$WORK/sigterm.txt")"
crash="$(cat "$WORK/sigkill.txt")"

cat <<EOF
== d06 restart, $N events applied ($subjects subjects in state, state directory $state_mb MB) ==
machine: $MACHINE
$clean
$crash
EOF
