# syntax=docker/dockerfile:1
# tokenway's tokenizer image: tokenway.tokenizer.v1 (gRPC port 50052), the model's own Hugging Face tokenizer and
# chat template. Build from the repository root:
#   docker build -f deploy/images/tokenizer.Dockerfile -t tokenway-tokenizer .
#   docker run --read-only -p 50052:50052 -v /srv/models/my-model:/models/model:ro tokenway-tokenizer
# The model directory is mounted, never baked in (TOKENWAY_MODEL=/models/model): the tokenizer files of the same
# directory the inference service serves, so their fingerprints match.
#
# Two stages: the first installs the venv (exactly from deploy/images/tokenizer.lock, then tokenway's packages,
# not editable); the second is the slim base plus that venv, run as uid 10001, writing only to /tmp.
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY deploy/images/tokenizer.lock /tmp/tokenizer.lock
RUN python -m venv /opt/tokenway/venv \
    && /opt/tokenway/venv/bin/pip install --no-deps -r /tmp/tokenizer.lock
COPY gen/python /src/gen/python
COPY libs/tokenway_common /src/libs/tokenway_common
COPY libs/tokenway_text /src/libs/tokenway_text
COPY services/tokenizer /src/services/tokenizer
RUN /opt/tokenway/venv/bin/pip install --no-deps --no-build-isolation \
        /src/gen/python /src/libs/tokenway_common /src/libs/tokenway_text /src/services/tokenizer \
    && /opt/tokenway/venv/bin/pip check \
    && /opt/tokenway/venv/bin/python -c "import tokenway_tokenizer.app"

FROM python:3.11.14-slim-bookworm
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /tmp tokenway \
    && mkdir -p /models
COPY --from=build /opt/tokenway/venv /opt/tokenway/venv
COPY deploy/images/health.py /opt/tokenway/health.py
# hadolint ignore=DL3064
ENV PATH=/opt/tokenway/venv/bin:$PATH \
    HOME=/tmp \
    HF_HOME=/tmp/hf \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TOKENWAY_MODEL=/models/model \
    TOKENWAY_TOKENIZER_HOST=0.0.0.0 \
    TOKENWAY_TOKENIZER_PORT=50052 \
    TOKENWAY_TOKENIZER_METRICS_PORT=9092
VOLUME ["/tmp"]
USER 10001:10001
WORKDIR /opt/tokenway
# gRPC, and Prometheus metrics (GET /metrics)
EXPOSE 50052 9092

# SERVING once the tokenizer is loaded.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/tokenway/health.py", "--prefix", "TOKENWAY_TOKENIZER", "--service", "tokenway.tokenizer.v1.TokenizerService"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "tokenway_tokenizer"]
