#!/usr/bin/env bash
# stop.sh [--wipe] [--kill] [kafka|clickhouse|prometheus|alertmanager|zookeeper|clickhouse-1|clickhouse-2|cluster
#          |clickhouse-tls|kafka-tls-broker|kafka-tls|postgres|kafka-pg|kafka-sasl-broker|kafka-sasl|persistent ...]
# (default: all, the local cluster, the TLS services and the persistent broker included)
# Stops what start.sh started: SIGTERM (SIGINT for PostgreSQL: its fast
# shutdown), waits up to D06_STOP_TIMEOUT seconds (default 20), then SIGKILL;
# removes the pid files. --kill sends SIGKILL at once (a crash, for the fault
# tests). --wipe also deletes the services' data (ClickHouse tables,
# Prometheus TSDB, Alertmanager silences, the persistent broker's PostgreSQL);
# logs and rendered configs stay. Kafka (tansu) keeps data in memory only.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

wipe=0
kill_now=0
args=()
for a in "$@"; do
    case "$a" in
        --wipe) wipe=1 ;;
        --kill) kill_now=1 ;;
        -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
        *) args+=("$a") ;;
    esac
done
if [ "${#args[@]}" -eq 0 ]; then args=("${D06_SERVICES[@]}" cluster persistent); fi
svc_list "${args[@]}"
timeout="${D06_STOP_TIMEOUT:-20}"

# SIGTERM every running service at once, then wait for all of them.
stopping=()
for svc in "${services[@]}"; do
    if pid="$(pid_of "$svc")"; then
        sig=TERM
        [ "$svc" != postgres ] || sig=INT
        [ "$kill_now" -eq 0 ] || sig=KILL
        kill -"$sig" "$pid" 2>/dev/null || true
        stopping+=("$svc:$pid")
    else
        rm -f "$(svc_pidfile "$svc")"
        port="$(svc_port "$svc")"
        if port_open "$port"; then
            log "$svc: not running (port $port is in use by a process this script did not start; left alone)"
        else
            log "$svc: not running"
        fi
    fi
done
deadline=$((SECONDS + timeout))
for entry in ${stopping[@]+"${stopping[@]}"}; do
    svc="${entry%%:*}" pid="${entry#*:}"
    while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
    if alive "$pid"; then
        log "$svc: still alive after ${timeout}s, SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while alive "$pid"; do sleep 0.05; done
    fi
    rm -f "$(svc_pidfile "$svc")"
    log "$svc: stopped (pid $pid)"
done

if [ "$wipe" -eq 1 ]; then
    for svc in "${services[@]}"; do
        dir="$(svc_dir "$svc")"
        case "$svc" in
            kafka | kafka-tls-broker | kafka-tls) continue ;; # in-memory storage: nothing on disk
            kafka-pg | kafka-sasl-broker | kafka-sasl) continue ;; # their log is in postgres's data
            clickhouse | clickhouse-[12] | clickhouse-tls) rm -rf "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" ;;
            *) rm -rf "$dir/data" ;;
        esac
        log "$svc: data wiped ($dir)"
    done
fi
