#!/usr/bin/env bash
# Re-vendor 3Dmol.js (npm package "3dmol", BSD-3-Clause) into pipeline/report/assets/3dmol/.
#
#   scripts/update_3dmol.sh 2.5.5
#
# The report inlines the minified build into report.html (pipeline/report/viewer.py), so nothing
# is fetched when a report is opened or when the pipeline runs: this script is the only thing that
# talks to the npm registry, and only when a maintainer runs it. It writes
#   3Dmol-min.js             build/3Dmol-min.js of the package, unchanged
#   LICENSE                  the package's LICENSE (3Dmol.js, GLmol, three.js, jQuery)
#   THIRD_PARTY_LICENSES.txt licences of the npm dependencies webpack bundles into the build
#   PROVENANCE.json          package, version, licence, tarball URL and integrity, sha256 of the files
# then checks that the build can be inlined in a <script> element. Afterwards run
#   nice -n 19 python -m pytest tests/test_report_3d.py -q
# (it checks the sha256 in PROVENANCE.json and renders a pose in headless Chromium) and commit
# the folder.
set -euo pipefail

version="${1:?usage: scripts/update_3dmol.sh VERSION (e.g. 2.5.5; 'npm view 3dmol version' gives the newest)}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo/pipeline/report/assets/3dmol"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
# npm pack checks the tarball against the registry's integrity hash
tarball="$(npm pack --silent "3dmol@$version" | tail -n 1)"
tar xzf "$tarball"
pkg="$work/package"
test -f "$pkg/build/3Dmol-min.js" || { echo "3dmol@$version has no build/3Dmol-min.js" >&2; exit 1; }

# an inline <script> ends at the first "</script" and changes parsing state at "<!--"
if grep -qi '</script' "$pkg/build/3Dmol-min.js" || grep -q '<!--' "$pkg/build/3Dmol-min.js"; then
    echo "3dmol@$version: build/3Dmol-min.js contains '</script' or '<!--' and cannot be inlined" >&2
    exit 1
fi

# licences of the bundled dependencies (newest version in the package's range: the range is all
# the package records of what its build bundled)
: > "$work/THIRD_PARTY_LICENSES.txt"
deps="$(node -e 'const d=require(process.argv[1]).dependencies||{}; for (const [n,r] of Object.entries(d)) console.log(n+"@"+r)' "$pkg/package.json")"
for dep in $deps; do
    mkdir -p "$work/dep" && rm -rf "$work/dep/"*
    (cd "$work/dep" && tar xzf "$(npm pack --silent "$dep" | tail -n 1)")
    name="${dep%@*}"
    resolved="$(node -e 'const p=require(process.argv[1]); console.log(p.version+" "+(p.license||""))' "$work/dep/package/package.json")"
    licence_file="$(find "$work/dep/package" -maxdepth 1 -iname 'licen[cs]e*' | head -n 1)"
    {
        echo "================================================================================"
        echo "$name $resolved (bundled in 3Dmol-min.js; npm range ${dep##*@})"
        echo "================================================================================"
        if [ -n "$licence_file" ]; then cat "$licence_file"; else echo "(the package ships no licence file)"; fi
        echo
    } >> "$work/THIRD_PARTY_LICENSES.txt"
done

mkdir -p "$dest"
cp "$pkg/build/3Dmol-min.js" "$dest/3Dmol-min.js"
cp "$pkg/LICENSE" "$dest/LICENSE"
cp "$work/THIRD_PARTY_LICENSES.txt" "$dest/THIRD_PARTY_LICENSES.txt"

integrity="$(npm view "3dmol@$version" dist.integrity)"
tarball_url="$(npm view "3dmol@$version" dist.tarball)"
licence="$(node -e 'console.log(require(process.argv[1]).license)' "$pkg/package.json")"
python3 - "$dest" "$version" "$licence" "$tarball_url" "$integrity" <<'PY'
import hashlib
import json
import sys
from datetime import date
from pathlib import Path

dest, version, licence, url, integrity = sys.argv[1:]
dest = Path(dest)
files = {
    name: hashlib.sha256((dest / name).read_bytes()).hexdigest()
    for name in ("3Dmol-min.js", "LICENSE", "THIRD_PARTY_LICENSES.txt")
}
record = {
    "package": "3dmol",
    "version": version,
    "license": licence,
    "source": f"{url} (build/3Dmol-min.js and LICENSE, unchanged)",
    "tarball_integrity": integrity,
    "vendored": date.today().isoformat(),
    "updated_by": "scripts/update_3dmol.sh",
    "sha256": files,
}
(dest / "PROVENANCE.json").write_text(json.dumps(record, indent=2) + "\n")
PY
echo "vendored 3dmol@$version into $dest:"
ls -l "$dest"
