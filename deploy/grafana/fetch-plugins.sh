#!/usr/bin/env bash
# Puts the Grafana plugin the d06 dashboards need, the ClickHouse data
# source, unpacked into deploy/grafana/plugins/, where the compose file's
# Grafana loads it from (GF_PATHS_PLUGINS): Grafana downloads nothing at
# start, so it starts in the IOC's closed network.
#
# Where the network reaches grafana.com (or a mirror of it):
#   bash deploy/grafana/fetch-plugins.sh
#   D06_GRAFANA_PLUGIN_URL=https://mirror.example/clickhouse-4.3.2.zip bash deploy/grafana/fetch-plugins.sh
# In the closed network, with the zip carried in by hand:
#   bash deploy/grafana/fetch-plugins.sh --zip grafana-clickhouse-datasource-4.3.2.linux_amd64.zip
#
# The zip is checked before anything replaces what is there: its plugin.json
# must name the pinned id and version, and its MANIFEST.txt (Grafana Labs'
# signature) must be present; Grafana verifies that signature when it loads
# the plugin, with the key built into it (GF_PLUGINS_PUBLIC_KEY_RETRIEVAL_DISABLED).
# Idempotent: with the pinned version already in place it does nothing.
# Exit codes: 0 done, 1 refused or failed (one line on stderr says why).
set -euo pipefail

PLUGIN_ID=grafana-clickhouse-datasource
# Keep in step with docs/OPERATIONS.md (Grafana) and the dashboards test.
PLUGIN_VERSION=4.3.2
# The grafana/grafana-oss image's platform.
ARCH="${D06_GRAFANA_PLUGIN_ARCH:-linux_amd64}"
URL="${D06_GRAFANA_PLUGIN_URL:-https://grafana.com/api/plugins/$PLUGIN_ID/versions/$PLUGIN_VERSION/download?os=${ARCH%%_*}&arch=${ARCH#*_}}"
DEST="${D06_GRAFANA_PLUGINS_DIR:-$(cd "$(dirname "$0")" && pwd)/plugins}"

die() { echo "fetch-plugins: $*" >&2; exit 1; }

zip=""
case "${1:-}" in
    --zip) [ $# -eq 2 ] || die "usage: $0 [--zip FILE]"; zip="$2"; [ -f "$zip" ] || die "no such file: $zip" ;;
    "") ;;
    *) die "usage: $0 [--zip FILE]" ;;
esac
command -v unzip >/dev/null || die "needs unzip (Debian: apt-get install unzip)"

# The version a plugin.json names: the first "version" key, the one in its
# "info" block (whether the file is pretty-printed or on one line).
version_of() {
    grep -o '"version"[[:space:]]*:[[:space:]]*"[^"]*"' "$1" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/'
}

target="$DEST/$PLUGIN_ID"
if [ -f "$target/plugin.json" ] && [ "$(version_of "$target/plugin.json")" = "$PLUGIN_VERSION" ]; then
    echo "fetch-plugins: $PLUGIN_ID $PLUGIN_VERSION already in $target"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -z "$zip" ]; then
    command -v curl >/dev/null || die "needs curl to download (or pass --zip FILE)"
    echo "fetch-plugins: downloading $PLUGIN_ID $PLUGIN_VERSION ($ARCH) from $URL"
    curl -fsSL --retry 3 --max-time 300 -o "$work/plugin.zip" "$URL" || die "download failed: $URL"
    zip="$work/plugin.zip"
fi
unzip -q "$zip" -d "$work/unpacked" || die "not a zip file: $zip"
# The archive holds one top directory: the plugin.
json="$(find "$work/unpacked" -mindepth 2 -maxdepth 2 -name plugin.json | head -n 1)"
[ -n "$json" ] || die "$zip: no plugin.json under a top directory"
root="$(dirname "$json")"
grep -q "\"id\"[[:space:]]*:[[:space:]]*\"$PLUGIN_ID\"" "$json" || die "$zip: plugin.json is not $PLUGIN_ID"
got="$(version_of "$json")"
[ "$got" = "$PLUGIN_VERSION" ] || die "$zip: version $got, d06 pins $PLUGIN_VERSION"
[ -f "$root/MANIFEST.txt" ] || die "$zip: no MANIFEST.txt: not a signed release (Grafana would refuse to load it)"

mkdir -p "$DEST"
rm -rf "$target.new"
mv "$root" "$target.new"
rm -rf "$target"
mv "$target.new" "$target"
echo "fetch-plugins: $PLUGIN_ID $PLUGIN_VERSION unpacked into $target"
