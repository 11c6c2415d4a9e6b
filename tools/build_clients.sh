#!/usr/bin/env bash
# Builds the example clients, idempotently; quiet on success, the failing step's output on failure.
#   Go:   .tokenway/bin/tokenway-chat-go              (go build; Go's cache makes a rebuild cheap)
#   Java: clients/java/target/tokenway-chat-java.jar  (installs gen/java into ~/.m2 first; skipped
#         when neither gen/java nor clients/java changed since the last build)
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
want=$(tree_hash gen/java/pom.xml gen/java/src clients/java/pom.xml clients/java/src)
if [[ -f $jar && -f $stamp && $(cat "$stamp") == "$want" ]]; then exit 0; fi
mvn=(mvn -B -q --no-transfer-progress -Dstyle.color=never)
run "installing gen/java into the local Maven repository" "${mvn[@]}" -f "$root/gen/java/pom.xml" install -DskipTests
run "Java client" "${mvn[@]}" -f "$root/clients/java/pom.xml" package -DskipTests
[[ -f $jar ]] || fail "Java client: $jar was not built"
echo "$want" > "$stamp"
