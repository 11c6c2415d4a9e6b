#!/usr/bin/env bash
# Installs what tokenway needs, idempotently, into .tokenway/ (never system-wide).
#   tools/setup.sh python   the Python venv with every package of the CPU profile
#   tools/setup.sh codegen  protoc plugins for Go and Java (make gen)
#   tools/setup.sh all      both, plus grpcurl
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
    -e "$root/gen/python" -e "$root/libs/tokenway_common" \
    -e "$root/services/tokenizer" -e "$root/services/inference" -e "$root/services/orchestrator" \
    | grep -vE '^(Requirement already satisfied|Obtaining|  )' || true
  "$venv/bin/python" -c 'import torch, transformers, grpc, tokenway_common' # fail loudly
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
  maven_exe protoc com.google.protobuf:protoc "$PROTOC_VERSION"
  maven_exe protoc-gen-grpc-java io.grpc:protoc-gen-grpc-java "$GRPC_JAVA_PLUGIN_VERSION"
}

maven_exe() { # name group:artifact version: a native executable published on Maven
  local name=$1 ga=$2 ver=$3 jp=$bin/$1
  if [[ ! -x $jp || $(cat "$bin/.$name.version" 2>/dev/null) != "$ver" ]]; then
    step "fetching $ga $ver (Maven)"
    mvn -q dependency:copy -Dartifact="$ga:$ver:exe:linux-x86_64" -DoutputDirectory="$bin" -Dmdep.stripVersion=true
    mv "$bin/${ga#*:}-linux-x86_64.exe" "$jp"
    chmod +x "$jp"
    echo "$ver" > "$bin/.$name.version"
  fi
}

grpcurl() {
  go_tool grpcurl "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
}

case "${1:-all}" in
  python) python_env ;;
  codegen) codegen ;;
  grpcurl) grpcurl ;;
  all) python_env; codegen; grpcurl ;;
  *) echo "usage: $0 [python|codegen|grpcurl|all]" >&2; exit 2 ;;
esac
