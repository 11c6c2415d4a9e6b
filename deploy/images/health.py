"""A tokenway container's health check: exit 0 when the service in this container is ready, 1 otherwise.

    python /opt/tokenway/health.py --prefix TOKENWAY_TOKENIZER --service tokenway.tokenizer.v1.TokenizerService
    python /opt/tokenway/health.py --prefix TOKENWAY_ENVOY --http /health

The images' HEALTHCHECK (docker, compose). Kubernetes uses its native gRPC probes instead (plaintext only): the
tls component swaps them for this script, which speaks TLS when the service does.

gRPC: grpc.health.v1.Health/Check for --service ("" is the process itself) on 127.0.0.1:<PREFIX>_PORT. With
<PREFIX>_TLS_CERT set the service serves TLS: the check verifies its certificate with --tls-ca (default: the
service's own <PREFIX>_TLS_CLIENT_CA, else <PREFIX>_PEER_TLS_CA) for the name --tls-server-name, and presents
the service's own certificate and key when the service requires client certificates (<PREFIX>_TLS_CLIENT_CA).
HTTP (--http PATH): GET http://127.0.0.1:<PREFIX>_PORT/PATH, https without verification when <PREFIX>_TLS_CERT is
set (the check asks this container's own listener), 200 is healthy.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.error
import urllib.request


def grpc_check(prefix: str, service: str, timeout: float, ca: str, server_name: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    env = os.environ
    target = f"127.0.0.1:{env[prefix + '_PORT']}"
    if env.get(f"{prefix}_TLS_CERT"):
        ca = ca or env.get(f"{prefix}_TLS_CLIENT_CA") or env.get(f"{prefix}_PEER_TLS_CA", "")
        if not ca:
            print(f"{prefix}_TLS_CERT is set: give --tls-ca (the CA that signed it)", file=sys.stderr)
            return False
        mtls = bool(env.get(f"{prefix}_TLS_CLIENT_CA"))

        def read(path: str) -> bytes:
            with open(path, "rb") as f:
                return f.read()

        creds = grpc.ssl_channel_credentials(read(ca), read(env[f"{prefix}_TLS_KEY"]) if mtls else None,
                                             read(env[f"{prefix}_TLS_CERT"]) if mtls else None)
        channel = grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", server_name)])
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                              timeout=timeout)
        except grpc.RpcError as e:
            print(f"{target} {service or '(process)'}: {e.code().name}", file=sys.stderr)
            return False
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{target} {service or '(process)'}: {status}")
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def http_check(prefix: str, path: str, timeout: float) -> bool:
    env = os.environ
    context = None
    if env.get(f"{prefix}_TLS_CERT"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    url = f"{'https' if context else 'http'}://127.0.0.1:{env[prefix + '_PORT']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as reply:
            print(f"{url}: {reply.status}")
            return reply.status == 200
    except urllib.error.HTTPError as e:
        print(f"{url}: {e.code}", file=sys.stderr)
    except OSError as e:
        print(f"{url}: {e}", file=sys.stderr)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", required=True, help="the service's settings prefix, e.g. TOKENWAY_INFERENCE")
    parser.add_argument("--service", default="", help="gRPC health service name; '' (the default): the process")
    parser.add_argument("--http", default="", metavar="PATH", help="an HTTP GET of PATH instead of gRPC")
    parser.add_argument("--timeout", type=float, default=4.0)
    parser.add_argument("--tls-ca", default="", help="CA bundle that verifies the service's certificate")
    parser.add_argument("--tls-server-name", default="localhost", help="name the service's certificate carries")
    args = parser.parse_args()
    if args.http:
        ok = http_check(args.prefix, args.http, args.timeout)
    else:
        ok = grpc_check(args.prefix, args.service, args.timeout, args.tls_ca, args.tls_server_name)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
