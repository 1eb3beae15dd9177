#!/usr/bin/env bash
# status.sh [services|cluster]: one line per service: running (ready) / running (not
# ready) / stopped, pid, port. Exits 0 when every listed service is running
# and ready, 1 otherwise.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

svc_list "$@"
all=0
for svc in "${services[@]}"; do
    port="$(svc_port "$svc")"
    if pid="$(pid_of "$svc")"; then
        if is_ready "$svc"; then state="running"; else state="running (not ready)"; all=1; fi
        printf '%-17s %-20s pid %-8s port %s\n' "$svc" "$state" "$pid" "$port"
    else
        all=1
        if port_open "$port"; then
            printf '%-17s %-20s pid %-8s port %s (in use by another process)\n' "$svc" stopped - "$port"
        else
            printf '%-17s %-20s pid %-8s port %s\n' "$svc" stopped - "$port"
        fi
    fi
done
exit "$all"
