#!/usr/bin/env bash
# The vLLM profile on a machine with an NVIDIA GPU, from a clean clone, in one go (make gpu-check):
# checks the GPU, installs the CUDA profile (deploy/vllm/requirements-cuda.lock), builds the embedded model,
# runs the engine contract suite and the end-to-end tests on vLLM (make test-vllm), compares greedy tokens
# of both engines (tools/compare_engines.py) and measures tokenway against vLLM's own server
# (bench/vs_vllm.py). Without Go, Maven and Java on the machine, the grpcurl and example-client end-to-end
# tests are left out of make test-vllm (said so in the output). Target: under 8 minutes with PyPI at
# data-centre speed (~8 GB to download for the two venvs on a clean clone; ~15 GB of disk).
#
# Needs: an NVIDIA driver for CUDA 13 (R580 or newer; torch 2.13's wheels), CPython 3.11 with venv
# (python3.11, or PYTHON=...), make, git, and PyPI. Each step is timed; a failed step is reported and the
# next one still runs; the exit status is 1 if any step failed. Everything is also written to
# bench/results/gpu-check-<UTC date>.txt.
#
# GPU settings passed through the environment (override them by exporting your own):
#   TOKENWAY_INFERENCE_THREADS=0                    threads bind vLLM's CPU build; the GPU engine refuses them
#                                                   (tools/suite.py would otherwise pick cores - 1)
#   TOKENWAY_INFERENCE_GPU_MEMORY_UTILIZATION=0.3   vLLM refuses to start unless that share of the GPU is free;
#                                                   its default 0.9 leaves no room for a second engine process
#                                                   (the KV cache itself is sized by kv_cache_tokens either way)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
mkdir -p bench/results
out=bench/results/gpu-check-$(date -u +%Y%m%d).txt

export TOKENWAY_VLLM_FLAVOUR=cuda
export TOKENWAY_INFERENCE_THREADS=${TOKENWAY_INFERENCE_THREADS:-0}
export TOKENWAY_INFERENCE_GPU_MEMORY_UTILIZATION=${TOKENWAY_INFERENCE_GPU_MEMORY_UTILIZATION:-0.3}
export HF_HUB_OFFLINE=1
if [[ -z ${PYTHON:-} ]]; then  # the lock is for CPython 3.11 (Ubuntu 22.04's python3 is 3.10, 24.04's 3.12)
  for candidate in python3.11 python3; do
    if "$candidate" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      export PYTHON=$candidate; break
    fi
  done
fi

failed=()
summary=()
step() {  # name limit_s command...: runs it, times it, records the outcome, never stops the script
  local name=$1 limit=$2 rc=0 start=$SECONDS status
  shift 2
  printf '\n==> %s: %s\n' "$name" "$*"
  if declare -F "$1" >/dev/null; then set -- bash -c '"$@"' "$1" "$@"; fi  # a function: in a child bash
  timeout -k 30 "$limit" "$@" || rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="TIMED OUT (${limit}s)"; failed+=("$name") ;;
    *) status="FAILED (exit $rc)"; failed+=("$name") ;;
  esac
  printf '<== %s: %s in %ds\n' "$name" "$status" $((SECONDS - start))
  summary+=("$(printf '%-12s %5ds  %s' "$name" $((SECONDS - start)) "$status")")
}

gpus() { local l; l=$(nvidia-smi -L 2>/dev/null | paste -sd';' -); echo "${l:-nvidia-smi -L: no GPU}"; }

# shellcheck disable=SC2329  # run by step (under timeout, in a child bash)
preflight() {
  local ok=0
  if ! nvidia-smi; then echo "nvidia-smi failed: no NVIDIA driver or GPU visible"; ok=1; fi
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv 2>/dev/null
  if [[ -n ${PYTHON:-} ]] && "$PYTHON" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "python: $(command -v "$PYTHON") ($("$PYTHON" --version 2>&1))"
  else
    echo "no CPython 3.11 with venv found (install python3.11 and python3.11-venv, or set PYTHON)"; ok=1
  fi
  return "$ok"
}

# shellcheck disable=SC2329
cuda_torch() {  # the driver can run the lock's torch: an old driver fails here, not deep inside vLLM
  .tokenway/venv-vllm/bin/python - <<'EOF'
import torch, vllm
print(f"vllm {vllm.__version__}, torch {torch.__version__} (CUDA {torch.version.cuda})")
assert torch.cuda.is_available(), "torch sees no CUDA device (driver too old for CUDA 13?)"
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}")
EOF
}

main() {
  local rev
  rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  [[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || rev+="+dirty"
  echo "# tools/gpu-check.sh $(date -u +%FT%TZ) · git $rev · $(gpus) · $(nproc) cores"
  echo "# TOKENWAY_INFERENCE_THREADS=$TOKENWAY_INFERENCE_THREADS" \
       "TOKENWAY_INFERENCE_GPU_MEMORY_UTILIZATION=$TOKENWAY_INFERENCE_GPU_MEMORY_UTILIZATION PYTHON=${PYTHON:-unset}"
  local begin=$SECONDS
  step preflight 60 preflight
  step setup-vllm 900 make setup-vllm
  step cuda-torch 120 cuda_torch
  step model 900 make model
  # make test-vllm runs every end-to-end test; the grpcurl and example-client ones need Go, Maven and Java
  local test_args=-q
  if command -v go >/dev/null && command -v mvn >/dev/null && command -v java >/dev/null; then
    step grpcurl 300 tools/setup.sh grpcurl
  else
    test_args+=" --ignore=tests/e2e/test_grpcurl.py --ignore=tests/e2e/test_clients.py"
    echo "# no Go/Maven/Java here: the grpcurl and example-client end-to-end tests are left out"
  fi
  step test-vllm 900 make test-vllm PYTEST_ARGS="$test_args"
  step compare 600 .tokenway/venv/bin/python tools/compare_engines.py --dtype float32 --tokens 32
  step vs-vllm 900 .tokenway/venv/bin/python bench/vs_vllm.py --rounds 2 --requests 48 --levels 1,8,32
  printf '\n# summary (%ds in all; target: under 480s)\n' $((SECONDS - begin))
  printf '%s\n' "${summary[@]}"
  if ((${#failed[@]})); then
    echo "# ${#failed[@]} step(s) failed: ${failed[*]}"
    return 1
  fi
  echo "# every step passed"
}

export -f preflight cuda_torch  # step runs them under `timeout` in a child bash
main 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
echo "(written to $out)"
exit "$rc"
