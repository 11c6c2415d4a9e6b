#!/usr/bin/env bash
# The CPU images without Docker: what `make deploy-check` cannot show (it reads the Dockerfiles; it runs nothing).
#   1. Replays each image's build stage into .tokenway/image-sim/<image>/venv with the Dockerfile's own commands:
#      a venv at /opt/tokenway/venv (a bind mount in a private mount namespace, so every script's #! is the
#      image's), the lock with --no-deps, tokenway's packages (not editable, --no-build-isolation), pip check.
#   2. Runs tokenizer, inference (transformers), orchestrator and Envoy from those venvs the way the images and
#      compose.yaml run them: uid 10001, the root filesystem read-only, tmpfs at /tmp, the model read-only at
#      /models/model, the store's volume at /var/lib/tokenway, dns:/// peers, auth on, Envoy's config rendered
#      at start; then asks every health check, creates an API key with the image's `tokenway` CLI and sends a
#      chat completion and a streamed one through Envoy.
# Needs root (mount namespaces, setpriv; it leaves the empty mount points /opt/tokenway/venv, /models/model and
# /var/lib/tokenway behind) and, the first time, ~5.5 GB of downloads (inference-cpu: PyPI's torch
# and its CUDA wheels) and a few minutes; later runs reuse the venvs while the locks and pyprojects are unchanged.
# Differences from a real container: the host's Python instead of the base image's, the host's network
# namespace (ports 51051-51053, 58080, 59091-59093 on 127.0.0.1; Envoy's admin 59901), no Docker build cache.
#   deploy/images/simulate.sh            build what changed, run, stop everything
#   deploy/images/simulate.sh build      only the venvs
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
sim=$root/.tokenway/image-sim
model=${TOKENWAY_MODEL:-$root/.tokenway/models/tokenway-tiny}
py=${PYTHON:-python3}
[[ $(id -u) -eq 0 ]] || { echo "simulate.sh needs root (mount namespaces)" >&2; exit 2; }
[[ -f $model/config.json ]] || { echo "no model in $model: make model" >&2; exit 2; }
step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
mkdir -p /opt/tokenway/venv /models/model /var/lib/tokenway  # mount points, as in the images

declare -A PACKAGES=(
  [orchestrator]="gen/python libs/tokenway_common libs/tokenway_text services/orchestrator"
  [tokenizer]="gen/python libs/tokenway_common libs/tokenway_text services/tokenizer"
  [inference-cpu]="gen/python libs/tokenway_common services/inference"
  [envoy]="")

build() { # image: the Dockerfile's build stage, into $sim/<image>/venv seen at /opt/tokenway/venv
  local image=$1 dir=$sim/$1 want
  # shellcheck disable=SC2086 # a list of directories
  want=$(cd "$root" && cat "deploy/images/$image.lock" $(for p in ${PACKAGES[$image]}; do echo "$p/pyproject.toml"; done) \
         | sha256sum | cut -c1-16)
  if [[ -f $dir/stamp && $(cat "$dir/stamp") == "$want" ]]; then return; fi
  step "building $image's venv (deploy/images/$image.Dockerfile's build stage)"
  rm -rf "$dir" && mkdir -p "$dir/venv" "$dir/src"
  for p in ${PACKAGES[$image]}; do mkdir -p "$dir/src/$p" && cp -r "$root/$p/." "$dir/src/$p/" && rm -rf "$dir/src/$p"/src/*.egg-info; done
  local srcs=""
  for p in ${PACKAGES[$image]}; do srcs+=" $dir/src/$p"; done
  unshare --mount --propagation private bash -euo pipefail -c "
    mount --bind '$dir/venv' /opt/tokenway/venv
    $py -m venv /opt/tokenway/venv
    /opt/tokenway/venv/bin/pip install -q --disable-pip-version-check --progress-bar on --no-deps -r '$root/deploy/images/$image.lock'
    if [[ -n '$srcs' ]]; then /opt/tokenway/venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation $srcs; fi
    /opt/tokenway/venv/bin/pip check"
  rm -rf "$dir/src"
  echo "$want" > "$dir/stamp"
}

# A service's private view: / read-only, its venv at /opt/tokenway/venv, /tmp a tmpfs, /models/model read-only,
# then its command as uid 10001 with only the image's environment.
run() { # image log env... -- command...
  local image=$1 log=$2; shift 2
  local envs=() cmd=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done; shift; cmd=("$@")
  local interp; interp=$(readlink -f "$(command -v "$py")")
  exec unshare --mount --propagation private bash -euo pipefail -c '
    sim=$1 image=$2 model=$3 interp=$4 store=$5; shift 5
    mount --bind "$sim/$image/venv" /opt/tokenway/venv && mount -o remount,bind,ro /opt/tokenway/venv
    mount -t tmpfs -o mode=0755 tmpfs /models && mkdir /models/model && cp -r "$model/." /models/model/ \
      && chmod -R a+rX /models/model && mount -o remount,ro /models  # as kubectl cp or fsGroup leaves the files
    mount --bind "$store" /var/lib/tokenway
    # an interpreter under a 0700 home (pyenv in /root) must stay reachable for uid 10001
    case $interp in /root/*) mount --bind /root/.pyenv /mnt && mount -t tmpfs -o mode=0755 tmpfs /root \
      && mkdir -p /root/.pyenv && mount --move /mnt /root/.pyenv ;; esac
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    mount --bind / / 2>/dev/null || true
    mount -o remount,bind,ro /
    exec setpriv --reuid 10001 --regid 10001 --clear-groups env -i "$@"
  ' run "$sim" "$image" "$model" "$interp" "$sim/store" PATH=/opt/tokenway/venv/bin:/usr/bin:/bin HOME=/tmp \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 HF_HOME=/tmp/hf XDG_CACHE_HOME=/tmp/cache \
    "${envs[@]}" "${cmd[@]}" > "$log" 2>&1
}

for image in orchestrator tokenizer inference-cpu envoy; do build "$image"; done
[[ ${1:-} == build ]] && exit 0

logs=$sim/logs; rm -rf "$logs" "$sim/store"; mkdir -p "$logs" "$sim/store"; chown 10001:10001 "$sim/store"
pids=()
stop() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait "${pids[@]}" 2>/dev/null || true; }
trap stop EXIT
step "running the four services read-only as uid 10001 (logs in ${logs#"$root"/})"
orch=(TOKENWAY_ORCHESTRATOR_HOST=0.0.0.0 TOKENWAY_ORCHESTRATOR_PORT=51051 TOKENWAY_ORCHESTRATOR_METRICS_PORT=59091
      TOKENWAY_ORCHESTRATOR_STORE=/var/lib/tokenway/tokenway.db TOKENWAY_ORCHESTRATOR_AUTH=on
      TOKENWAY_ORCHESTRATOR_TOKENIZER_ADDRESS=dns:///localhost:51052 TOKENWAY_ORCHESTRATOR_INFERENCE_ADDRESSES=dns:///localhost:51053)
run tokenizer "$logs/tokenizer.log" TOKENWAY_MODEL=/models/model TOKENWAY_TOKENIZER_HOST=0.0.0.0 TOKENWAY_TOKENIZER_PORT=51052 \
  TOKENWAY_TOKENIZER_METRICS_PORT=59092 -- python -m tokenway_tokenizer & pids+=($!)
run inference-cpu "$logs/inference.log" TOKENWAY_MODEL=/models/model TOKENWAY_INFERENCE_HOST=0.0.0.0 \
  TOKENWAY_INFERENCE_PORT=51053 TOKENWAY_INFERENCE_METRICS_PORT=59093 TOKENWAY_INFERENCE_ENGINE=transformers \
  TOKENWAY_INFERENCE_THREADS=1 TOKENWAY_INFERENCE_SERVED_MODEL_NAME=tokenway-tiny -- python -m tokenway_inference & pids+=($!)
run orchestrator "$logs/orchestrator.log" "${orch[@]}" -- python -m tokenway_orchestrator & pids+=($!)
cp "$root/deploy/images/health.py" "$sim/health.py"
run envoy "$logs/envoy.log" TOKENWAY_ENVOY_HOST=127.0.0.1 TOKENWAY_ENVOY_PORT=58080 TOKENWAY_ENVOY_ADMIN_PORT=59901 \
  TOKENWAY_ENVOY_ORCHESTRATOR_HOST=localhost TOKENWAY_ORCHESTRATOR_PORT=51051 TOKENWAY_ENVOY_BUFFER_MB=8 \
  -- python "$root/tools/envoy.py" run --out /tmp/envoy/envoy.yaml & pids+=($!)

hp=$sim/orchestrator/venv/bin/python
ready=0
for _ in $(seq 1 120); do
  sleep 1  # polling readiness of processes just started
  if TOKENWAY_ENVOY_PORT=58080 "$hp" "$sim/health.py" --prefix TOKENWAY_ENVOY --http /health >/dev/null 2>&1; then ready=1; break; fi
done
TOKENWAY_TOKENIZER_PORT=51052 "$hp" "$sim/health.py" --prefix TOKENWAY_TOKENIZER --service tokenway.tokenizer.v1.TokenizerService || true
TOKENWAY_INFERENCE_PORT=51053 "$hp" "$sim/health.py" --prefix TOKENWAY_INFERENCE --service tokenway.inference.v1.InferenceService || true
TOKENWAY_ORCHESTRATOR_PORT=51051 "$hp" "$sim/health.py" --prefix TOKENWAY_ORCHESTRATOR --service tokenway.v1.ChatService || true
TOKENWAY_ENVOY_PORT=58080 "$hp" "$sim/health.py" --prefix TOKENWAY_ENVOY --http /health || true
if [[ $ready != 1 ]]; then echo "!! not ready in 120 s; logs in $logs" >&2; exit 1; fi
key=$(run orchestrator /dev/stdout "${orch[@]}" -- tokenway keys create "simulate-$(date +%s)" | grep -oE 'tw-[A-Za-z0-9_-]{20,}' | head -1)
body='{"model":"tokenway-tiny","messages":[{"role":"user","content":"Hello!"}],"max_tokens":8}'
answer=$(curl -sS -m 30 http://127.0.0.1:58080/v1/chat/completions -H 'content-type: application/json' \
         -H "authorization: Bearer $key" -d "$body")
echo "chat completion: ${answer:0:160}"
events=$(curl -sSN -m 30 http://127.0.0.1:58080/v1/chat/completions -H 'content-type: application/json' \
         -H "authorization: Bearer $key" -d "${body%\}},\"stream\":true}" | grep -c '^data:' || true)
echo "streamed: $events SSE events"
curl -sS -m 5 http://127.0.0.1:59093/metrics | grep -E '^tokenway_inference_(running|waiting)_requests' || true
grep -q '"finish_reason"' <<<"$answer" && [[ $events -gt 1 ]] || { echo "!! no answer through Envoy; logs in $logs" >&2; exit 1; }
! grep -l 'Read-only file system\|Permission denied' "$logs"/*.log || { echo "!! a service wrote outside its volumes" >&2; exit 1; }
step "the images' contents serve a chat completion as uid 10001 on a read-only root filesystem"
