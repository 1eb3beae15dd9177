#!/usr/bin/env python3
"""Generates d06's embedded national geography (aggregator/data/national/).

Development time only: d06 never runs Python. Inputs (see the data README for
the exact download commands and versions):

  --new   nested-divisions.json of PyPI vietnam-provinces 2025.10.1
          (34 provinces, 3,321 communes after 1 July 2025)
  --old   nested-divisions.json of PyPI vietnam-provinces 0.6.0
          (63 provinces, their districts and communes before the reform)
  --conv  the GSO old→new conversion table BangChuyendoiĐVHCmoi_cu_khong_merge.csv
          (from the package's own repository; the wheels do not carry it)
  --out   the output directory

Outputs (UTF-8, comma-separated, no quoting, codes zero-padded as in EVENTS-v1):

  provinces_pre2025.csv   province_code,province_name
  districts_pre2025.csv   province_code,district_code,district_name
  communes_pre2025.csv    district_code,commune_code,commune_name
  provinces_post2025.csv  province_code,province_name
  communes_post2025.csv   province_code,commune_code,commune_name
  old_to_new.csv          old_district_code,old_commune_code,new_commune_code,primary
  provinces_old_to_new.csv old_province_code,new_province_code

The post-2025 communes take their codes and names from the conversion table
(the GSO's final codes; 2025.10.1 still carries draft codes for some units),
checked unit by unit against 2025.10.1: same 34 provinces, same 3,321 units
per province; the differences are printed and summarised in the README.
"""

import argparse
import csv
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

WHOLE = ("nhập toàn bộ", "giữ nguyên", "đổi tên", "đổi loại hình", "sắp xếp toàn bộ")


def clean(s):
    s = " ".join(s.split())
    if "," in s or '"' in s:
        sys.exit(f"field needs quoting: {s!r}")
    return s


def province_name(s):
    # "Tỉnh Bình Phước" → "Bình Phước" (as 2025.10.1 and the Bình Phước files
    # name provinces); "Thành phố Hà Nội" stays.
    s = clean(s)
    return s[len("Tỉnh "):] if s.startswith("Tỉnh ") else s


def code_in(s):
    m = re.search(r"\((\d+)\)\s*$", s.strip())
    if not m:
        sys.exit(f"no code in {s!r}")
    return int(m.group(1))


def write(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(str(x) for x in r) + "\n")
    print(f"{path}: {len(rows)} rows", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new", required=True)
    ap.add_argument("--old", required=True)
    ap.add_argument("--conv", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    old = json.load(open(a.old, encoding="utf-8"))
    new = json.load(open(a.new, encoding="utf-8"))

    # Before the reform: 63 provinces, districts, communes (0.6.0 as it is).
    provinces, districts, communes = [], [], []
    old_district = {}
    for p in old:
        provinces.append((f"{p['code']:02}", province_name(p["name"])))
        for d in p["districts"]:
            districts.append((f"{p['code']:02}", f"{d['code']:03}", clean(d["name"])))
            for w in d["wards"]:
                communes.append((f"{d['code']:03}", f"{w['code']:05}", clean(w["name"])))
                old_district[w["code"]] = d["code"]
    write(out / "provinces_pre2025.csv", ["province_code", "province_name"], provinces)
    write(out / "districts_pre2025.csv", ["province_code", "district_code", "district_name"], districts)
    write(out / "communes_pre2025.csv", ["district_code", "commune_code", "commune_name"], communes)

    # The conversion table: one row per (new unit, old unit) pair.
    rows = []
    with open(a.conv, encoding="utf-8-sig", newline="") as f:
        for r in csv.reader(f):
            if len(r) > 7 and re.fullmatch(r"\d{5}", r[2].strip()):
                rows.append(r)
    units = {}  # new code → (province code, name)
    for r in rows:
        units.setdefault(int(r[2]), (code_in(r[0]), clean(r[1])))

    # After the reform: provinces from 2025.10.1, units from the table, checked.
    pkg = {w["code"]: (p["code"], clean(w["name"])) for p in new for w in p["wards"]}
    new_provinces = [(f"{p['code']:02}", province_name(p["name"])) for p in new]
    if Counter(v[0] for v in pkg.values()) != Counter(v[0] for v in units.values()):
        sys.exit("units per province differ between 2025.10.1 and the conversion table")
    recoded = sorted(c for c in units if c not in pkg or pkg[c] != units[c])
    print(f"{len(recoded)} units whose code or name differs in 2025.10.1 (draft codes)", file=sys.stderr)
    write(out / "provinces_post2025.csv", ["province_code", "province_name"], new_provinces)
    write(
        out / "communes_post2025.csv",
        ["province_code", "commune_code", "commune_name"],
        [(f"{p:02}", f"{c:05}", n) for c, (p, n) in units.items()],
    )

    # Old → new: every pair; `primary` marks the one unit an old code maps to:
    # itself if its code was kept, else the first unit it merged into whole,
    # else the first unit listed.
    pairs = defaultdict(list)
    for r in rows:
        if not r[4].strip():
            continue
        o, n = int(r[4]), int(r[2])
        pairs[o].append((n, r[5].strip().lower().startswith(WHOLE), code_in(r[6]), code_in(r[7])))
    mapping, prov = [], defaultdict(Counter)
    for o, targets in pairs.items():
        codes = [t[0] for t in targets]
        whole = [t[0] for t in targets if t[1]]
        primary = o if o in codes else (whole[0] if whole else codes[0])
        district = targets[0][2]
        for n, _, _, p in targets:
            mapping.append((f"{district:03}", f"{o:05}", f"{n:05}", int(n == primary)))
            prov[p][units[n][0]] += 1
    write(out / "old_to_new.csv", ["old_district_code", "old_commune_code", "new_commune_code", "primary"], mapping)
    moves = []
    for p, c in sorted(prov.items()):
        if len(c) > 1:
            print(f"old province {p:02} feeds {dict(c)}; the majority is taken", file=sys.stderr)
        moves.append((f"{p:02}", f"{c.most_common(1)[0][0]:02}"))
    write(out / "provinces_old_to_new.csv", ["old_province_code", "new_province_code"], moves)

    unmapped = sorted(set(old_district) - set(pairs))
    extra = sorted(set(pairs) - set(old_district))
    print(f"pre-2025 communes without a successor in the table: {len(unmapped)} {unmapped}", file=sys.stderr)
    print(f"old codes in the table but not in 0.6.0: {len(extra)} {extra}", file=sys.stderr)


if __name__ == "__main__":
    main()
