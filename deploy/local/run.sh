#!/usr/bin/env bash
# The README's main command: installs and starts the local services, builds
# d06 and runs the pipeline with the example configuration and the embedded
# 2024 Bình Phước campaign plan. Ctrl-C drains and stops it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."
bash deploy/local/install.sh
bash deploy/local/start.sh kafka clickhouse prometheus alertmanager
cargo build --release --locked --bin d06
mkdir -p .d06/local
# A local pseudonymisation key, made once and kept (the state store is bound to it).
if [ -z "${D06_HMAC_KEY:-}" ]; then
    key_file=.d06/local/hmac.key
    [ -s "$key_file" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$key_file"
    D06_HMAC_KEY="$(cat "$key_file")"
    export D06_HMAC_KEY
fi
exec ./target/release/d06 run --config deploy/d06.example.toml "$@"
