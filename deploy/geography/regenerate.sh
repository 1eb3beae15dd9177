#!/usr/bin/env bash
# Regenerates aggregator/data/national/ from its sources (development time
# only; needs PyPI and GitHub). See aggregator/data/national/README.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d /tmp/d06-geography.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
python3 -m pip download --no-deps --quiet vietnam-provinces==2025.10.1 -d new
python3 -m pip download --no-deps --quiet vietnam-provinces==0.6.0 -d old
(mkdir xn && cd xn && python3 -m zipfile -e ../new/vietnam_provinces-2025.10.1-py3-none-any.whl .)
(mkdir xo && cd xo && python3 -m zipfile -e ../old/vietnam_provinces-0.6.0-py3-none-any.whl .)
git clone --quiet https://github.com/sunshine-tech/VietnamProvinces.git upstream
git -C upstream checkout --quiet 809e91b
sha256sum new/*.whl old/*.whl "upstream/dev/seed-data/2025-07/BangChuyendoiĐVHCmoi_cu_khong_merge.csv"
python3 "$here/generate.py" \
  --new xn/vietnam_provinces/data/nested-divisions.json \
  --old xo/vietnam_provinces/data/nested-divisions.json \
  --conv "upstream/dev/seed-data/2025-07/BangChuyendoiĐVHCmoi_cu_khong_merge.csv" \
  --out "$repo/aggregator/data/national"
