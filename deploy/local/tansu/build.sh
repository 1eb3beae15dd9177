#!/usr/bin/env bash
# Builds the persistent local broker: tansu 0.6.0 from crates.io with its
# PostgreSQL storage and this directory's patches (README.md says why), once;
# cached under $D06_CACHE/tansu-pg/<stamp>/ and a fast no-op afterwards. The
# stamp is a digest of the patches and this script, so changing either
# builds again. About 15 minutes on 2 cores the first time (its own target
# directory, $D06_CACHE/tansu-pg-target, is kept: a rebuild takes ~2).
# Needs cargo, curl, patch and a C compiler; no root.
set -euo pipefail
# shellcheck source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

out="$(tansu_pg_path)"
if [ -x "$out" ]; then
    log "tansu-pg: already built ($out)"
    exit 0
fi

# The three crates the binary is built from, pinned by their crates.io
# checksums (the rest comes from tansu's own Cargo.lock).
version=0.6.0
crates=(
    "tansu 4fdd85473ec265140488cf8d55e82b844f5c051c8916fabdd4a71156ac053f6d"
    "tansu-broker 93c1e91b40c2a706dfdbe9a795c08c70918c874ad23f6e0e87564cc0a180e720"
    "tansu-storage 720d2ed8e6010c70f7f06e5af5a7274ebbf6e42fdcd9e46de542b10dc4d2f35d"
)
for tool in cargo curl patch sha256sum tar; do
    command -v "$tool" >/dev/null || die "tansu-pg: $tool is needed to build the persistent broker"
done

src="$(dirname "$out")/src"
rm -rf "$src"
mkdir -p "$src"
for entry in "${crates[@]}"; do
    read -r name sum <<<"$entry"
    file="$src/$name-$version.crate"
    # cargo's own download cache first (no network), then crates.io.
    cached="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$version.crate" 2>/dev/null | head -n1 || true)"
    if [ -n "$cached" ] && [ "$(sha256sum <"$cached" | cut -d' ' -f1)" = "$sum" ]; then
        cp "$cached" "$file"
    else
        log "tansu-pg: downloading $name $version from crates.io"
        curl -fsSL --retry 3 -o "$file" "https://static.crates.io/crates/$name/$name-$version.crate" ||
            die "tansu-pg: could not download $name $version from static.crates.io"
    fi
    [ "$(sha256sum <"$file" | cut -d' ' -f1)" = "$sum" ] || die "tansu-pg: $name-$version.crate does not match its crates.io checksum"
    tar -xzf "$file" -C "$src"
    mv "$src/$name-$version" "$src/$name"
done

for p in endtxn storage group producer; do
    patch -s -p1 -d "$src" <"$D06_LIB_DIR/tansu/$p.patch" || die "tansu-pg: $p.patch does not apply to tansu $version"
done
cat >>"$src/tansu/Cargo.toml" <<'TOML'

[patch.crates-io]
tansu-broker = { path = "../tansu-broker" }
tansu-storage = { path = "../tansu-storage" }
TOML

log "tansu-pg: building tansu $version with PostgreSQL storage (about 15 min the first time; log $src/build.log)"
started=$SECONDS
if ! (cd "$src/tansu" && CARGO_TARGET_DIR="$D06_CACHE/tansu-pg-target" nice cargo build --release --features postgres \
    >"$src/build.log" 2>&1); then
    tail -n 30 "$src/build.log" >&2
    die "tansu-pg: cargo build failed (log $src/build.log)"
fi
cp "$D06_CACHE/tansu-pg-target/release/tansu" "$out.tmp"
mv "$out.tmp" "$out"
log "tansu-pg: built in $((SECONDS - started)) s: $out"
