# syntax=docker/dockerfile:1
# tokenway's GPU inference image: the inference service (tokenway.inference.v1, port 50053) on PyPI's vLLM
# (CUDA build), installed exactly from deploy/vllm/requirements-cuda.lock. Build from the repository root:
#   docker build -f deploy/images/inference-gpu.Dockerfile -t tokenway-inference-gpu .
#   docker run --gpus all -p 50053:50053 -v /srv/models/my-model:/models/model:ro \
#     -v tokenway-cache:/var/cache/tokenway tokenway-inference-gpu
# The model is mounted, never baked in: TOKENWAY_MODEL=/models/model (a Hugging Face directory; the service
# refuses to start without it). Any TOKENWAY_INFERENCE_* setting can be passed with -e (services/inference/README.md).
#
# Base: python:3.11 slim (Debian 12, glibc 2.36), pinned by tag, not an nvidia/cuda image. vLLM's and torch's
# CUDA wheels bring the CUDA runtime, cuBLAS, cuDNN, NCCL and nvcc as pip packages (the nvidia-* lines of the
# lock); only the driver comes from the host, mounted by the NVIDIA container toolkit (`--gpus`). A CUDA base
# image would add a second copy of those libraries and a second Python. The lock is resolved for glibc >= 2.35
# and CPython 3.11 (tools/vllm_lock.sh cuda); torch 2.13's CUDA 13 wheels need a host driver of R580 or newer.
FROM python:3.11.14-slim-bookworm

# Triton (vLLM's kernels, torch.compile) compiles a small launcher with the system C compiler on first use;
# Debian's gcc is whatever bookworm ships (pinning apt versions breaks on every point release).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/tokenway/venv \
    PATH=/opt/tokenway/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# vLLM and every package it needs, exactly as locked: --no-deps, no resolution at build time. Its own layer,
# so a change to tokenway's code does not download ~4 GB again.
COPY deploy/vllm/requirements-cuda.lock /tmp/requirements-cuda.lock
RUN python -m venv "$VIRTUAL_ENV" \
    && pip install --no-deps -r /tmp/requirements-cuda.lock \
    && rm /tmp/requirements-cuda.lock

# tokenway's packages, installed (not editable) next to it; the lock already holds what they import, and
# pip check proves it. No GPU is needed to build: vLLM is imported only to prove it is there.
COPY gen/python /tmp/src/gen/python
COPY libs/tokenway_common /tmp/src/libs/tokenway_common
COPY services/inference /tmp/src/services/inference
RUN pip install --no-deps --no-build-isolation \
        /tmp/src/gen/python /tmp/src/libs/tokenway_common /tmp/src/services/inference \
    && rm -rf /tmp/src \
    && pip check \
    && python -c "import vllm, tokenway_inference.app"

# Not root. vLLM's compile cache, Triton's, torch inductor's and CUDA's kernels live in one writable volume, so a
# restart with the same volume skips most of the warm-up compilation. Everything else it writes goes to /tmp
# (HOME; vLLM's IPC sockets), so the root filesystem can be read-only (Kubernetes: emptyDir volumes; shared memory
# for NCCL and torch workers is /dev/shm, a memory emptyDir in the gpu component). No usage statistics are sent.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /tmp tokenway \
    && mkdir -p /var/cache/tokenway /models \
    && chown tokenway:tokenway /var/cache/tokenway
COPY deploy/images/health.py /opt/tokenway/health.py
# TOKENWAY_* names hold no secrets (hadolint reads the "TOKEN" in them).
# hadolint ignore=DL3064
ENV HOME=/tmp \
    VLLM_CACHE_ROOT=/var/cache/tokenway/vllm \
    TRITON_CACHE_DIR=/var/cache/tokenway/triton \
    TORCHINDUCTOR_CACHE_DIR=/var/cache/tokenway/inductor \
    CUDA_CACHE_PATH=/var/cache/tokenway/nv \
    XDG_CACHE_HOME=/var/cache/tokenway/xdg \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TOKENWAY_MODEL=/models/model \
    TOKENWAY_INFERENCE_ENGINE=vllm \
    TOKENWAY_INFERENCE_HOST=0.0.0.0 \
    TOKENWAY_INFERENCE_PORT=50053 \
    TOKENWAY_INFERENCE_METRICS_PORT=9093
VOLUME ["/tmp", "/var/cache/tokenway"]
# numeric, so Kubernetes' runAsNonRoot can verify it
USER 10001:10001
WORKDIR /opt/tokenway
# gRPC, and Prometheus metrics (GET /metrics)
EXPOSE 50053 9093

# SERVING only once the model is loaded and warmed (the first start may compile for minutes).
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "/opt/tokenway/health.py", "--prefix", "TOKENWAY_INFERENCE", "--service", "tokenway.inference.v1.InferenceService"]

# SIGTERM: NOT_SERVING, drain in-flight streams (TOKENWAY_INFERENCE_GRACE_SECONDS), then vLLM shuts down.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "tokenway_inference"]
