# syntax=docker/dockerfile:1
# tokenway's orchestrator image: the public API (tokenway.v1, gRPC port 50051). Build from the repository root:
#   docker build -f deploy/images/orchestrator.Dockerfile -t tokenway-orchestrator .
#   docker run --read-only -p 50051:50051 -v tokenway-store:/var/lib/tokenway \
#     -e TOKENWAY_ORCHESTRATOR_TOKENIZER_ADDRESS=tokenizer:50052 \
#     -e TOKENWAY_ORCHESTRATOR_INFERENCE_ADDRESSES=inference:50053 tokenway-orchestrator
# Keys: `docker exec <container> tokenway keys create NAME` (the same store). Any TOKENWAY_ORCHESTRATOR_* setting
# can be passed with -e (services/orchestrator/README.md); several orchestrators share a postgresql:// STORE.
#
# Two stages: the first installs the venv (exactly from deploy/images/orchestrator.lock, then tokenway's packages,
# not editable); the second is the slim base plus that venv, run as uid 10001, and needs nothing writable but
# /tmp and the store's volume (Kubernetes: readOnlyRootFilesystem with emptyDir volumes).
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY deploy/images/orchestrator.lock /tmp/orchestrator.lock
RUN python -m venv /opt/tokenway/venv \
    && /opt/tokenway/venv/bin/pip install --no-deps -r /tmp/orchestrator.lock
COPY gen/python /src/gen/python
COPY libs/tokenway_common /src/libs/tokenway_common
COPY libs/tokenway_text /src/libs/tokenway_text
COPY services/orchestrator /src/services/orchestrator
RUN /opt/tokenway/venv/bin/pip install --no-deps --no-build-isolation \
        /src/gen/python /src/libs/tokenway_common /src/libs/tokenway_text /src/services/orchestrator \
    && /opt/tokenway/venv/bin/pip check \
    && /opt/tokenway/venv/bin/python -c "import tokenway_orchestrator.app, tokenway_orchestrator.cli"

FROM python:3.11.14-slim-bookworm
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /tmp tokenway \
    && mkdir -p /var/lib/tokenway \
    && chown 10001:10001 /var/lib/tokenway
COPY --from=build /opt/tokenway/venv /opt/tokenway/venv
COPY deploy/images/health.py /opt/tokenway/health.py
# TOKENWAY_* names hold no secrets (hadolint reads the "TOKEN" in them). The store is a SQLite file in a volume
# (one orchestrator); replicas share a postgresql:// URL instead (Kubernetes: from a Secret).
# hadolint ignore=DL3064
ENV PATH=/opt/tokenway/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TOKENWAY_ORCHESTRATOR_HOST=0.0.0.0 \
    TOKENWAY_ORCHESTRATOR_PORT=50051 \
    TOKENWAY_ORCHESTRATOR_METRICS_PORT=9091 \
    TOKENWAY_ORCHESTRATOR_STORE=/var/lib/tokenway/tokenway.db
VOLUME ["/tmp", "/var/lib/tokenway"]
# numeric, so Kubernetes' runAsNonRoot can verify it
USER 10001:10001
WORKDIR /opt/tokenway
# gRPC, and Prometheus metrics (GET /metrics)
EXPOSE 50051 9091

# SERVING once it has a ready tokenizer and inference replica for at least one model.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/tokenway/health.py", "--prefix", "TOKENWAY_ORCHESTRATOR", "--service", "tokenway.v1.ChatService"]

# SIGTERM: NOT_SERVING, DRAIN_SECONDS, then in-flight calls get GRACE_SECONDS to finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "tokenway_orchestrator"]
