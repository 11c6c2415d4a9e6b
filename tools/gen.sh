#!/usr/bin/env bash
# Regenerates gen/{python,go} and gen/descriptors from protos/ with pinned tools.
# (Java is not committed: clients/java's Maven build generates its messages and stubs from protos/.)
# Usage: tools/gen.sh [OUT_DIR]   (default: gen; gen-check writes to a temp dir and diffs)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/gen}
py=${TOKENWAY_PYTHON:-$root/.tokenway/venv/bin/python}
bin=$root/.tokenway/bin
cd "$root/protos"

mapfile -t files < <(find tokenway -name '*.proto' | LC_ALL=C sort)
protoc=("$py" -m grpc_tools.protoc -I. -Ithird_party)

# Python: messages, typing stubs and grpc stubs; imports stay `tokenway.v1...`.
rm -rf "$out/python/src/tokenway" && mkdir -p "$out/python/src"
"${protoc[@]}" --python_out="$out/python/src" --pyi_out="$out/python/src" \
  --grpc_python_out="$out/python/src" "${files[@]}"
find "$out/python/src/tokenway" -type d -exec touch {}/__init__.py \;

# Go: one package per proto package, module github.com/tokenway/tokenway/gen/go.
rm -rf "$out/go/tokenway" && mkdir -p "$out/go"
"${protoc[@]}" --plugin=protoc-gen-go="$bin/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
  --go_out="$out/go" --go_opt=module=github.com/tokenway/tokenway/gen/go \
  --go-grpc_out="$out/go" --go-grpc_opt=module=github.com/tokenway/tokenway/gen/go \
  "${files[@]}"

# Descriptor set for Envoy's gRPC-JSON transcoder (public API and its imports).
mkdir -p "$out/descriptors"
"${protoc[@]}" --include_imports --include_source_info \
  --descriptor_set_out="$out/descriptors/tokenway.pb" "${files[@]}"
echo "generated into $out"
