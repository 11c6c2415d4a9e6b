#!/usr/bin/env bash
# Builds the example clients, idempotently; quiet when there is nothing to do, the failing step's output on failure.
#   Go:   .tokenway/bin/tokenway-chat-go              (go build; Go's cache makes a rebuild cheap)
#   Java: clients/java/target/tokenway-chat-java.jar  (Maven generates the messages and stubs from protos/ with
#         the protoc and grpc-java plugin pinned in clients/java/pom.xml, then builds one runnable jar; the first
#         build downloads them and the libraries into ~/.m2 and lists each one; skipped when neither protos/
#         nor clients/java changed since the last build)
# The Python client needs no build: clients/python/stream_chat.py runs in the venv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/.tokenway/bin
mkdir -p "$bin"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

fail() { printf '\033[1;31mbuild_clients: %s\033[0m\n' "$*" >&2; exit 1; }
run() { # description command...: runs quietly, prints its output and fails on error
  local what=$1; shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    fail "$what failed: $*"
  fi
}
step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
need() { command -v "$1" >/dev/null || fail "'$1' is not on PATH ($2)"; }
tree_hash() { # files under the given paths, by content
  (cd "$root" && find "$@" -type f -not -path '*/target/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
    | sha256sum | cut -c1-16
}

need go "Go 1.24+ builds clients/go"
run "Go client" env -C "$root/clients/go" go build -o "$bin/tokenway-chat-go" .

need mvn "Maven builds clients/java"
need java "Java 17+ runs clients/java"
jar=$root/clients/java/target/tokenway-chat-java.jar
stamp=$root/clients/java/target/.tokenway-stamp
want=$(tree_hash protos/tokenway protos/third_party clients/java/pom.xml clients/java/src)
if [[ -f $jar && -f $stamp && $(cat "$stamp") == "$want" ]]; then exit 0; fi
step "Java client: generating the stubs from protos/ and building ${jar#"$root"/} with Maven" \
  "(first time: protoc, grpc-java and their libraries into ~/.m2, listed below)"
# Maven's log goes to $log; what it downloads (jars and executables, not the many small poms) is shown.
if ! mvn -B -Dstyle.color=never -f "$root/clients/java/pom.xml" package -DskipTests 2>&1 | tee "$log" \
     | awk '/^\[INFO\] Downloaded from .*\.(jar|exe) \(/ { n = split($5, p, "/"); size = $6; sub(/^\(/, "", size)
                                                          printf "    %s (%s %s)\n", p[n], size, $7; fflush() }'; then
  tail -n 60 "$log" >&2
  fail "Java client failed: mvn -f clients/java/pom.xml package"
fi
[[ -f $jar ]] || fail "Java client: $jar was not built"
echo "$want" > "$stamp"
