# syntax=docker/dockerfile:1
# tokenway's CPU inference image: the inference service (tokenway.inference.v1, gRPC port 50053) on the embedded
# transformers engine (continuous batching on torch). The GPU image is inference-gpu.Dockerfile (vLLM).
# Build from the repository root:
#   docker build -f deploy/images/inference-cpu.Dockerfile -t tokenway-inference-cpu .
#   docker run --read-only -p 50053:50053 -v /srv/models/my-model:/models/model:ro tokenway-inference-cpu
# The model is mounted, never baked in: TOKENWAY_MODEL=/models/model (a Hugging Face directory). Any
# TOKENWAY_INFERENCE_* setting can be passed with -e (services/inference/README.md).
#
# torch: by default PyPI's torch 2.13.0 from deploy/images/inference-cpu.lock, the build the tests run. For Linux
# PyPI serves only torch's CUDA build, which runs on a CPU but cannot even be imported without its nvidia-* wheels
# (~2.7 GB of CUDA libraries this image never uses). PyTorch's own CPU index serves the same version without
# them; it is not reachable from tokenway's development machines, so it is an opt-in, not the default:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -f deploy/images/inference-cpu.Dockerfile .
# installs torch==<the lock's version>+cpu from there and leaves out the lock's torch, triton, nvidia-* and cuda-*
# lines; pip check then proves nothing else needed them.
FROM python:3.11.14-slim-bookworm AS build
ARG TORCH_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY deploy/images/inference-cpu.lock /tmp/inference-cpu.lock
RUN python -m venv /opt/tokenway/venv \
    && if [ -n "$TORCH_INDEX_URL" ]; then \
        torch=$(sed -n 's/^torch==//p' /tmp/inference-cpu.lock) \
        && grep -vE '^(torch|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==' /tmp/inference-cpu.lock > /tmp/install.lock \
        && /opt/tokenway/venv/bin/pip install --no-deps --index-url "$TORCH_INDEX_URL" "torch==${torch}+cpu"; \
    else \
        cp /tmp/inference-cpu.lock /tmp/install.lock; \
    fi \
    && /opt/tokenway/venv/bin/pip install --no-deps -r /tmp/install.lock
COPY gen/python /src/gen/python
COPY libs/tokenway_common /src/libs/tokenway_common
COPY services/inference /src/services/inference
RUN /opt/tokenway/venv/bin/pip install --no-deps --no-build-isolation \
        /src/gen/python /src/libs/tokenway_common /src/services/inference \
    && /opt/tokenway/venv/bin/pip check \
    && /opt/tokenway/venv/bin/python -c "import torch, tokenway_inference.app"

FROM python:3.11.14-slim-bookworm
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /tmp tokenway \
    && mkdir -p /models
COPY --from=build /opt/tokenway/venv /opt/tokenway/venv
COPY deploy/images/health.py /opt/tokenway/health.py
# hadolint ignore=DL3064
ENV PATH=/opt/tokenway/venv/bin:$PATH \
    HOME=/tmp \
    HF_HOME=/tmp/hf \
    XDG_CACHE_HOME=/tmp/cache \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TOKENWAY_MODEL=/models/model \
    TOKENWAY_INFERENCE_ENGINE=transformers \
    TOKENWAY_INFERENCE_HOST=0.0.0.0 \
    TOKENWAY_INFERENCE_PORT=50053 \
    TOKENWAY_INFERENCE_METRICS_PORT=9093
VOLUME ["/tmp"]
USER 10001:10001
WORKDIR /opt/tokenway
# gRPC, and Prometheus metrics (GET /metrics)
EXPOSE 50053 9093

# SERVING only once the model is loaded and warmed.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "/opt/tokenway/health.py", "--prefix", "TOKENWAY_INFERENCE", "--service", "tokenway.inference.v1.InferenceService"]

# SIGTERM: NOT_SERVING, drain in-flight streams (TOKENWAY_INFERENCE_GRACE_SECONDS), then the engine closes.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "tokenway_inference"]
