#!/usr/bin/env bash
# start.sh [kafka|clickhouse|prometheus|alertmanager|zookeeper|clickhouse-1|clickhouse-2|cluster
#           |clickhouse-tls|kafka-tls-broker|kafka-tls|postgres|kafka-pg|kafka-sasl-broker|kafka-sasl
#           |persistent ...]
# (default: all but the cluster and the persistent broker; `cluster` = zookeeper
# clickhouse-1 clickhouse-2, the local two-node ClickHouse cluster, see lib.sh
# and clickhouse/cluster.xml; `persistent` = postgres kafka-pg kafka-sasl-broker
# kafka-sasl: tansu builds that keep their log in PostgreSQL, built by
# tansu/build.sh, the second one requiring SASL behind stunnel's TLS)
# Starts each service that is not already running, as a background process
# bound to 127.0.0.1 with config, data, log and pid file under $D06_LOCAL_DIR,
# and waits until it is ready (D06_START_TIMEOUT seconds). On failure prints
# the end of the service's log, stops what it just started and exits 1.
# Run install.sh first (start.sh does not install anything).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

svc_list "$@"

# launch SERVICE CMD...: run CMD in the background with output to the
# service log; the pid file holds CMD's own pid (the wrapper execs it).
# The caller reads the pid from that file, not from this function's
# output, so that whatever else a service's preparation prints cannot
# be taken for it.
launch() {
    local svc="$1" pidfile
    shift
    pidfile="$(svc_pidfile "$svc")"
    rm -f "$pidfile"
    mkdir -p "$(svc_dir "$svc")"
    printf '\n=== %s starting: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$(svc_log "$svc")"
    # shellcheck disable=SC2016 # expanded by the inner bash
    nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" \
        >>"$(svc_log "$svc")" 2>&1 </dev/null &
    for _ in $(seq 50); do
        [ -s "$pidfile" ] && break
        sleep 0.02
    done
    [ -s "$pidfile" ] || die "$svc: no pid file after launch"
}

# render_clickhouse DIR HTTP_PORT TCP_PORT: the server's config.xml and
# users.xml under DIR/etc.
render_clickhouse() {
    local dir="$1"
    mkdir -p "$dir"/{etc,data,tmp,log,user_files,format_schemas}
    sed -e "s#@CH_DIR@#$dir#g" \
        -e "s#@HTTP_PORT@#$2#g" \
        -e "s#@TCP_PORT@#$3#g" \
        "$D06_LIB_DIR/clickhouse/config.xml" >"$dir/etc/config.xml"
    cp "$D06_LIB_DIR/clickhouse/users.xml" "$dir/etc/users.xml"
}

# remote_servers_xml: the <shard> elements of the local cluster's layout.
remote_servers_xml() {
    local n http tcp inter shard replica prev=""
    for n in 1 2; do
        read -r http tcp inter shard replica <<<"$(cluster_node "$n")"
        if [ "$shard" != "$prev" ]; then
            [ -z "$prev" ] || echo "            </shard>"
            echo "            <shard>"
            echo "                <internal_replication>true</internal_replication>"
            prev="$shard"
        fi
        echo "                <replica><host>127.0.0.1</host><port>$tcp</port></replica>"
    done
    echo "            </shard>"
}

# render_cluster_node DIR N: DIR/etc/config.d/cluster.xml for clickhouse-N.
render_cluster_node() {
    local dir="$1" http tcp inter shard replica servers
    read -r http tcp inter shard replica <<<"$(cluster_node "$2")"
    mkdir -p "$dir/etc/config.d"
    servers="$(mktemp)"
    remote_servers_xml >"$servers"
    sed -e "s#@INTERSERVER_PORT@#$inter#g" \
        -e "s#@ZK_PORT@#$D06_ZOOKEEPER_PORT#g" \
        -e "s#@CLUSTER@#$D06_CLUSTER_NAME#g" \
        -e "s#@SHARD@#$shard#g" \
        -e "s#@REPLICA@#$replica#g" \
        "$D06_LIB_DIR/clickhouse/cluster.xml" |
        awk -v f="$servers" '/^@REMOTE_SERVERS@$/ { while ((getline l < f) > 0) print l; next } { print }' \
            >"$dir/etc/config.d/cluster.xml"
    rm -f "$servers"
}

# tansu_database DB: PostgreSQL database DB with tansu's schema
# (tansu/010-schema.sql), made once. Needs the postgres service.
tansu_database() {
    local db="$1"
    pid_of postgres >/dev/null || die "start postgres before the brokers that keep their log in it"
    if [ "$(psql_local postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$db'")" != 1 ]; then
        psql_local postgres -c "CREATE DATABASE $db" >/dev/null || die "could not create database $db"
        psql_local "$db" -f "$D06_LIB_DIR/tansu/010-schema.sql" >/dev/null ||
            die "could not apply tansu's schema to database $db"
    fi
}

# tansu_pg_broker SVC DB PORT ADVERTISED: sets the global array `broker` to
# the command running the persistent tansu build for service SVC on
# 127.0.0.1:PORT, advertising ADVERTISED, with its log in database DB (made
# when missing). Dies when the build is missing.
tansu_pg_broker() {
    local tansu
    tansu="$(tansu_pg_path)"
    [ -x "$tansu" ] || die "$1: the persistent tansu is not built; run deploy/local/tansu/build.sh"
    tansu_database "$2"
    broker=(env -u OTEL_EXPORTER_OTLP_ENDPOINT RUST_LOG="${RUST_LOG:-warn}" "$tansu" broker
        --listener-url "tcp://127.0.0.1:$3" --advertised-listener-url "tcp://127.0.0.1:$4"
        --storage-engine "postgres://postgres@127.0.0.1:$D06_POSTGRES_PORT/$2")
}

# sasl_user DB PORT BROKER...: user d06 with the password in
# $D06_TLS_DIR/kafka.password on the SASL broker's storage DB, set again
# whenever that password is not the one last set (a digest in the service's
# directory). tansu takes users only from a broker without authentication,
# so one runs (the command BROKER..., listening on PORT) just for that, then
# is killed (its storage keeps the user).
sasl_user() {
    local db="$1" port="$2" pid rc=0 marker digest tansu
    shift 2
    marker="$(svc_dir kafka-sasl-broker)/user-d06.sha256"
    mkdir -p "$(dirname "$marker")"
    digest="$(printf '%s:%s' "$db" "$(cat "$D06_TLS_DIR/kafka.password")" | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$marker" 2>/dev/null)" = "$digest" ] &&
        [ "$(psql_local "$db" -c "SELECT count(*) FROM scram_credential WHERE username = 'd06'")" = 1 ]; then
        return 0
    fi
    "$@" >>"$(svc_log kafka-sasl-broker)" 2>&1 &
    pid=$!
    tansu="$(tansu_pg_path)"
    wait_for_port "$port" 30 "$pid" || rc=1
    # The password is on this command line for a moment (tansu takes it no
    # other way): a test password of a loopback broker.
    [ "$rc" -ne 0 ] || "$tansu" user create --broker "tcp://127.0.0.1:$port" --mechanism scram512 d06 \
        "$(cat "$D06_TLS_DIR/kafka.password")" >>"$(svc_log kafka-sasl-broker)" 2>&1 || rc=1
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ "$rc" -eq 0 ] || die "kafka-sasl-broker: could not create the SASL user d06 (log: $(svc_log kafka-sasl-broker))"
    echo "$digest" >"$marker"
}

# stunnel_in_front SVC BROKER TLS_PORT INNER_PORT: stunnel, as service SVC,
# terminating TLS (a certificate of the test CA) on TLS_PORT and forwarding
# to the broker service BROKER on INNER_PORT.
stunnel_in_front() {
    local svc="$1" broker="$2" dir
    dir="$(svc_dir "$svc")"
    command -v stunnel4 >/dev/null || die "$svc: stunnel4 not installed; run deploy/local/install.sh"
    pid_of "$broker" >/dev/null || die "$svc: start $broker first"
    tls_material
    mkdir -p "$dir"
    sed -e "s#@TLS_PORT@#$3#g" -e "s#@INNER_PORT@#$4#g" \
        -e "s#@TLS_DIR@#$D06_TLS_DIR#g" "$D06_LIB_DIR/stunnel-kafka.conf" >"$dir/stunnel.conf"
    launch "$svc" stunnel4 "$dir/stunnel.conf"
}

prepare_and_launch() {
    local svc="$1" dir
    dir="$(svc_dir "$svc")"
    case "$svc" in
        kafka)
            local tansu
            tansu="$(tansu_bin)" || die "kafka: tansu not installed under $D06_VENV; run deploy/local/install.sh"
            launch kafka env -u OTEL_EXPORTER_OTLP_ENDPOINT "$tansu" broker \
                --listener-url "tcp://127.0.0.1:$D06_KAFKA_PORT" \
                --advertised-listener-url "tcp://127.0.0.1:$D06_KAFKA_PORT" \
                --storage-engine memory://tansu/
            ;;
        clickhouse)
            local ch
            ch="$(clickhouse_bin)" || die "clickhouse: clickhouse-server not installed; run deploy/local/install.sh"
            render_clickhouse "$dir" "$D06_CLICKHOUSE_PORT" "$D06_CLICKHOUSE_TCP_PORT"
            (cd "$dir" && launch clickhouse "$ch" --config-file="$dir/etc/config.xml")
            ;;
        clickhouse-[12])
            local ch n="${svc#clickhouse-}" http tcp rest
            ch="$(clickhouse_bin)" || die "$svc: clickhouse-server not installed; run deploy/local/install.sh"
            read -r http tcp rest <<<"$(cluster_node "$n")"
            render_clickhouse "$dir" "$http" "$tcp"
            render_cluster_node "$dir" "$n"
            (cd "$dir" && launch "$svc" "$ch" --config-file="$dir/etc/config.xml")
            ;;
        zookeeper)
            # Debian's zookeeperd jars, run by hand as a standalone server
            # (not its init script or systemd unit).
            [ -f /usr/share/java/zookeeper.jar ] || die "zookeeper: not installed; run deploy/local/install.sh"
            mkdir -p "$dir"/{etc,data,log}
            cat >"$dir/etc/zoo.cfg" <<CFG
tickTime=2000
dataDir=$dir/data
clientPort=$D06_ZOOKEEPER_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok
autopurge.purgeInterval=1
CFG
            launch zookeeper java -Xmx256m -cp "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar" \
                -Dzookeeper.log.dir="$dir/log" -Dzookeeper.root.logger=WARN,CONSOLE \
                org.apache.zookeeper.server.ZooKeeperServerMain "$dir/etc/zoo.cfg"
            ;;
        clickhouse-tls)
            # HTTPS only (no http_port, no tcp_port), a certificate of the
            # test CA, user d06 with the password of tls_material.
            local ch pw
            ch="$(clickhouse_bin)" || die "clickhouse-tls: clickhouse-server not installed; run deploy/local/install.sh"
            tls_material
            mkdir -p "$dir"/{etc/config.d,data,tmp,log,user_files,format_schemas}
            sed -e "s#@CH_DIR@#$dir#g" -e "s#@HTTP_PORT@#0#g" -e "s#@TCP_PORT@#0#g" \
                "$D06_LIB_DIR/clickhouse/config.xml" >"$dir/etc/config.xml"
            sed -e "s#@HTTPS_PORT@#$D06_CLICKHOUSE_TLS_PORT#g" -e "s#@TLS_DIR@#$D06_TLS_DIR#g" \
                "$D06_LIB_DIR/clickhouse/tls.xml" >"$dir/etc/config.d/tls.xml"
            pw="$(sha256sum <"$D06_TLS_DIR/clickhouse.password" | cut -d' ' -f1)"
            sed -e "s#@PASSWORD_SHA256@#$pw#g" "$D06_LIB_DIR/clickhouse/users-tls.xml" >"$dir/etc/users.xml"
            (cd "$dir" && launch clickhouse-tls "$ch" --config-file="$dir/etc/config.xml")
            ;;
        kafka-tls-broker)
            # A second, separate tansu on loopback, reached only through
            # kafka-tls (stunnel): it advertises stunnel's TLS port.
            local tansu
            tansu="$(tansu_bin)" || die "kafka-tls-broker: tansu not installed under $D06_VENV; run deploy/local/install.sh"
            launch kafka-tls-broker env -u OTEL_EXPORTER_OTLP_ENDPOINT "$tansu" broker \
                --listener-url "tcp://127.0.0.1:$D06_KAFKA_TLS_INNER_PORT" \
                --advertised-listener-url "tcp://127.0.0.1:$D06_KAFKA_TLS_PORT" \
                --storage-engine memory://tansu/
            ;;
        kafka-tls)
            stunnel_in_front kafka-tls kafka-tls-broker "$D06_KAFKA_TLS_PORT" "$D06_KAFKA_TLS_INNER_PORT"
            ;;
        postgres)
            # Debian's PostgreSQL, run by hand on loopback as the postgres
            # user (never its cluster wrapper or systemd unit), trust auth on
            # loopback only; the cluster is made on the first start.
            local bin
            bin="$(pg_bindir)" || die "postgres: PostgreSQL not installed; run deploy/local/install.sh"
            mkdir -p "$dir/run"
            [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$dir" "$dir/run"
            if [ ! -s "$dir/data/PG_VERSION" ]; then
                rm -rf "$dir/data"
                # shellcheck disable=SC2046 # pg_user is a command prefix or nothing
                $(pg_user) "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
                    >>"$(svc_log postgres)" 2>&1 || die "postgres: initdb failed (log: $(svc_log postgres))"
            fi
            # shellcheck disable=SC2046
            launch postgres $(pg_user) "$bin/postgres" -D "$dir/data" -p "$D06_POSTGRES_PORT" \
                -c listen_addresses=127.0.0.1 -c unix_socket_directories="$dir/run" -c max_connections=200
            ;;
        kafka-pg)
            # tansu with its PostgreSQL storage: topics, records, committed
            # offsets and transactions survive a restart or a SIGKILL. Its
            # database and schema (tansu/010-schema.sql) are made once.
            local broker
            tansu_pg_broker kafka-pg tansu "$D06_KAFKA_PG_PORT" "$D06_KAFKA_PG_PORT"
            launch kafka-pg "${broker[@]}"
            ;;
        kafka-sasl-broker)
            # The same build requiring SASL/SCRAM (user d06), with its own
            # database; on loopback, reached only through kafka-sasl, whose
            # TLS port it advertises.
            local broker port="$D06_KAFKA_SASL_INNER_PORT"
            tls_material
            tansu_pg_broker kafka-sasl-broker tansu_sasl "$port" "$port"
            sasl_user tansu_sasl "$port" "${broker[@]}"
            tansu_pg_broker kafka-sasl-broker tansu_sasl "$port" "$D06_KAFKA_SASL_PORT"
            launch kafka-sasl-broker "${broker[@]}" --authentication
            ;;
        kafka-sasl)
            stunnel_in_front kafka-sasl kafka-sasl-broker "$D06_KAFKA_SASL_PORT" "$D06_KAFKA_SASL_INNER_PORT"
            ;;
        prometheus)
            command -v prometheus >/dev/null || die "prometheus not installed; run deploy/local/install.sh"
            mkdir -p "$dir/data"
            sed -e "s#127\.0\.0\.1:9464#$D06_METRICS_ADDR#g" \
                -e "s#127\.0\.0\.1:9093#127.0.0.1:$D06_ALERTMANAGER_PORT#g" \
                -e "s#\.\./prometheus/rules/#$D06_REPO/deploy/prometheus/rules/#g" \
                "$D06_LIB_DIR/prometheus.yml" >"$dir/prometheus.yml"
            if command -v promtool >/dev/null && ! out="$(promtool check config "$dir/prometheus.yml" 2>&1)"; then
                printf '%s\n' "$out" >&2
                die "prometheus: rendered config $dir/prometheus.yml is invalid"
            fi
            launch prometheus prometheus \
                --config.file="$dir/prometheus.yml" \
                --storage.tsdb.path="$dir/data" \
                --storage.tsdb.retention.time=7d \
                --web.listen-address="127.0.0.1:$D06_PROMETHEUS_PORT" \
                --web.enable-lifecycle
            ;;
        alertmanager)
            local am
            am="$(alertmanager_bin)" || die "alertmanager not installed; run deploy/local/install.sh"
            mkdir -p "$dir/data"
            launch alertmanager "$am" \
                --config.file="$D06_LIB_DIR/alertmanager.yml" \
                --storage.path="$dir/data" \
                --web.listen-address="127.0.0.1:$D06_ALERTMANAGER_PORT" \
                --cluster.listen-address=
            ;;
    esac
}

# wait_ready SERVICE PID: poll is_ready until D06_START_TIMEOUT; fail early
# if the process exits.
wait_ready() {
    local svc="$1" pid="$2" deadline=$((SECONDS + D06_START_TIMEOUT))
    wait_for_port "$(svc_port "$svc")" "$D06_START_TIMEOUT" "$pid" || return 1
    while [ "$SECONDS" -lt "$deadline" ]; do
        is_ready "$svc" && return 0
        alive "$pid" || return 1
        sleep 0.2
    done
    is_ready "$svc"
}

fail() {
    local svc="$1" pid="$2" why="$3"
    show_log_tail "$svc" 30
    if [ -n "$pid" ] && alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
    rm -f "$(svc_pidfile "$svc")"
    die "$svc: $why (log: $(svc_log "$svc"))"
}

mkdir -p "$D06_LOCAL_DIR"
for svc in "${services[@]}"; do
    port="$(svc_port "$svc")"
    if pid="$(pid_of "$svc")"; then
        if wait_ready "$svc" "$pid"; then
            log "$svc: already running (pid $pid, port $port)"
            continue
        fi
        show_log_tail "$svc" 30
        die "$svc: running (pid $pid, left alone) but not ready on port $port after ${D06_START_TIMEOUT}s; was it started with other D06_* settings? (log: $(svc_log "$svc"))"
    fi
    if port_open "$port"; then
        die "$svc: port $port is already in use by a process this script did not start; stop it or set $(echo "D06_${svc}_PORT" | tr '[:lower:]' '[:upper:]')"
    fi
    start_ns=$(date +%s%N)
    prepare_and_launch "$svc"
    pid="$(cat "$(svc_pidfile "$svc")")"
    if wait_ready "$svc" "$pid"; then
        ms=$((($(date +%s%N) - start_ns) / 1000000))
        log "$svc: started (pid $pid, port $port, ready in ${ms} ms)"
    elif alive "$pid"; then
        fail "$svc" "$pid" "not ready on port $port after ${D06_START_TIMEOUT}s"
    else
        fail "$svc" "" "exited during startup"
    fi
done
