#!/usr/bin/env bash
# The README's test command: installs and starts the real services on
# loopback (idempotent, cached), then runs every test against them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."

started=$(date +%s)
bash deploy/local/install.sh
bash deploy/local/start.sh kafka clickhouse prometheus alertmanager
# The local two-server ClickHouse cluster with its ZooKeeper (tests/blackbox/cluster.rs).
bash deploy/local/start.sh cluster
# The TLS tests' services (tests/blackbox/tls.rs): HTTPS ClickHouse with a
# password, a second tansu behind stunnel, certificates of a test CA.
bash deploy/local/start.sh clickhouse-tls kafka-tls-broker kafka-tls
# The persistent brokers: tansu with PostgreSQL storage, built once from
# crates.io (cached), so that a broker killed mid-stream comes back with its
# log (tests/blackbox/broker_restart.rs), and the same build requiring
# SASL/SCRAM behind stunnel's TLS (tests/blackbox/tls.rs).
bash deploy/local/tansu/build.sh
bash deploy/local/start.sh persistent
# The persistent build must re-form a group whose leader left mid-rebalance
# (Apache Kafka does; tansu without tansu/group.patch does not).
# shellcheck source=lib.sh
. deploy/local/lib.sh
"$D06_VENV/bin/python" deploy/local/tansu/check_group.py "127.0.0.1:$D06_KAFKA_PG_PORT" ||
    die "the persistent broker does not re-form consumer groups; see deploy/local/tansu/README.md, item 4"
echo "[d06-test] services ready after $(( $(date +%s) - started )) s"

export D06_TEST_KAFKA="127.0.0.1:${D06_KAFKA_PORT:-9092}"
export D06_TEST_CLICKHOUSE="http://127.0.0.1:${D06_CLICKHOUSE_PORT:-8123}"
export D06_TEST_CLICKHOUSE_URL="$D06_TEST_CLICKHOUSE"
export D06_TEST_CLICKHOUSE_CLUSTER="$D06_CLUSTER_NAME"
export D06_TEST_CLICKHOUSE_CLUSTER_URLS="http://127.0.0.1:$D06_CH1_PORT,http://127.0.0.1:$D06_CH2_PORT"
D06_TEST_TLS_DIR="$(. deploy/local/lib.sh && echo "$D06_TLS_DIR")"
export D06_TEST_TLS_DIR
export D06_TEST_CLICKHOUSE_TLS="https://127.0.0.1:${D06_CLICKHOUSE_TLS_PORT:-18443}"
export D06_TEST_KAFKA_TLS="127.0.0.1:${D06_KAFKA_TLS_PORT:-19393}"
export D06_TEST_KAFKA_PERSISTENT="127.0.0.1:$D06_KAFKA_PG_PORT"
export D06_TEST_KAFKA_SASL="127.0.0.1:$D06_KAFKA_SASL_PORT"

# House style first: formatting and lints (clippy.toml allows unwrap and
# expect in tests only; [workspace.lints] holds the rest).
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked
echo "[d06-test] built after $(( $(date +%s) - started )) s"

# Prometheus rules: unit tests with promtool, when there are any.
shopt -s nullglob
rule_tests=(deploy/prometheus/tests/*.yml)
if [ "${#rule_tests[@]}" -gt 0 ]; then
    promtool check rules deploy/prometheus/rules/*.yml
    promtool test rules "${rule_tests[@]}"
fi

cargo test --workspace --locked -- --test-threads=2
echo "[d06-test] all tests passed in $(( $(date +%s) - started )) s"
