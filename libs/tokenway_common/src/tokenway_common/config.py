"""Configuration from prefixed environment variables, mirrored as CLI flags, parsed once.

A service declares a frozen dataclass whose fields carry `setting(...)` metadata; `load()` reads
`<PREFIX>_<FIELD>` from the environment, then `--field-name` from argv (flags win), converts and
validates every value, and raises ConfigError with one clear line per bad setting. A settings class
may add checks that relate several fields: a `relation_problems(label)` method returning messages
(`label(field)` names a field as its variable and flag), run once every single value passed its checks.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import ssl
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is missing or malformed."""


def setting(default: Any, help: str, *, choices: Sequence[Any] | None = None, minimum: float | None = None,
            secret: bool = False, check: Callable[[Any], str | None] | None = None) -> Any:
    """Declares one setting: its default, its help text and its constraints."""
    meta = {"help": help, "choices": choices, "minimum": minimum, "secret": secret, "check": check}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    return dataclasses.field(default=default, metadata=meta)


def pem_file(what: str) -> Callable[[str], str | None]:
    """A `check` for a path setting: empty (unset), or a readable file holding at least one PEM `what`."""
    def check(path: str) -> str | None:
        if not path:
            return None
        try:
            text = open(path, encoding="ascii", errors="replace").read()  # noqa: SIM115 - closed at once
        except OSError as e:
            return f"cannot read {path}: {e.strerror or e}"
        if "-----BEGIN " not in text:
            return f"{path} holds no PEM {what} (no -----BEGIN line)"
        return None
    return check


def tls_pair_problem(cert: str, key: str, ca: str, *, server: bool) -> str | None:
    """What is wrong with a certificate, its key and a CA bundle as TLS (OpenSSL) would load them, or None:
    a key that is not the certificate's, a file that is no certificate or key, a CA bundle without a CA.
    Unset paths are skipped; unreadable ones are the `pem_file` checks' to report."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    try:
        if cert and key:
            ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        return f"{cert} and {key} are no matching PEM certificate chain and private key ({e.reason or e})"
    try:
        if ca:
            ctx.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as e:
        return f"{ca} holds no usable PEM CA certificate ({getattr(e, 'reason', None) or e})"
    return None


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """Settings every service has. Subclass it and add your own fields."""

    host: str = setting("127.0.0.1", "address to bind (0.0.0.0 to listen on every interface)")
    port: int = setting(0, "port to bind (0 picks a free one)", minimum=0)
    grace_seconds: float = setting(10.0, "on SIGTERM, how long in-flight RPCs may finish", minimum=0)
    drain_seconds: float = setting(0.0, "on SIGTERM, how long to report NOT_SERVING before draining", minimum=0)
    log_level: str = setting("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format: str = setting("text", "log format", choices=("text", "json"))
    max_message_mb: int = setting(64, "largest gRPC message accepted or sent, MiB", minimum=1)
    max_request_mb: int = setting(0, "largest request message the server accepts (refused by gRPC before it is "
                                     "parsed), MiB; 0: max_message_mb", minimum=0)
    metrics_port: int = setting(0, "port of the Prometheus metrics endpoint (HTTP GET /metrics) on host; 0: none. "
                                   "A port that cannot be bound stops the start", minimum=0)
    processes: int = setting(1, "server processes sharing the port (Linux SO_REUSEPORT: the kernel spreads "
                                "connections over them) under one supervisor; 0: one per core, at most 8",
                             minimum=0)
    # TLS: plaintext unless tls_cert is set (the local default: everything on loopback).
    tls_cert: str = setting("", "PEM certificate chain this server presents (TLS); empty: plaintext",
                            check=pem_file("certificate"))
    tls_key: str = setting("", "PEM private key of tls_cert", check=pem_file("private key"))
    tls_client_ca: str = setting("", "PEM CA bundle: clients must present a certificate it signed (mTLS); needs "
                                     "tls_cert", check=pem_file("CA certificate"))
    # Outbound: the channels to the peers this service calls (the orchestrator's tokenizer and inference).
    peer_tls_ca: str = setting("", "PEM CA bundle that verifies the peers this service calls; set: TLS to the peers, "
                                   "empty: plaintext", check=pem_file("CA certificate"))
    peer_tls_cert: str = setting("", "PEM client certificate chain presented to peers that require mTLS; needs "
                                     "peer_tls_ca and peer_tls_key", check=pem_file("certificate"))
    peer_tls_key: str = setting("", "PEM private key of peer_tls_cert", check=pem_file("private key"))
    peer_tls_server_name: str = setting("", "name the peers' certificates must carry, instead of the host of their "
                                            "address (grpc.ssl_target_name_override); needs peer_tls_ca")

    @property
    def tls_mode(self) -> str:
        """How this server listens: plaintext, tls or mtls."""
        return "mtls" if self.tls_client_ca else "tls" if self.tls_cert else "plaintext"

    def relation_problems(self, label: Callable[[str], str]) -> list[str]:
        problems = []
        if bool(self.tls_cert) != bool(self.tls_key):
            have, missing = ("tls_cert", "tls_key") if self.tls_cert else ("tls_key", "tls_cert")
            problems.append(f"{label(missing)}: required with {label(have)} (set both for TLS, neither for plaintext)")
        if self.tls_client_ca and not self.tls_cert:
            problems.append(f"{label('tls_client_ca')}: needs {label('tls_cert')} and {label('tls_key')} (mTLS is TLS "
                            "with client certificates)")
        if bool(self.peer_tls_cert) != bool(self.peer_tls_key):
            have, missing = ("peer_tls_cert", "peer_tls_key") if self.peer_tls_cert else ("peer_tls_key", "peer_tls_cert")
            problems.append(f"{label(missing)}: required with {label(have)}")
        for name in ("peer_tls_cert", "peer_tls_key", "peer_tls_server_name"):
            if getattr(self, name) and not self.peer_tls_ca:
                problems.append(f"{label(name)}: needs {label('peer_tls_ca')} (the CA that verifies the peers)")
        if not problems:
            for names, server in ((("tls_cert", "tls_key", "tls_client_ca"), True),
                                  (("peer_tls_cert", "peer_tls_key", "peer_tls_ca"), False)):
                values = [getattr(self, n) for n in names]
                if any(values) and all(pem_file("file")(v) is None for v in values) and \
                        (msg := tls_pair_problem(*values, server=server)):
                    problems.append(f"{label(names[0]) if values[0] else label(names[2])}: {msg}")
        return problems


def _base_type(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    return tp


def _convert(name: str, raw: str, tp: Any) -> Any:
    base = _base_type(tp)
    origin = typing.get_origin(base)
    try:
        if base is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if base is int:
            return int(raw)
        if base is float:
            return float(raw)
        if origin is tuple:
            inner = typing.get_args(base)[0]
            return tuple(_convert(name, part.strip(), inner) for part in raw.split(",") if part.strip())
        return raw
    except ValueError:
        raise ConfigError(f"{name}: cannot read {raw!r} as {getattr(base, '__name__', base)}") from None


def env_name(prefix: str, field: str) -> str:
    return f"{prefix}_{field.upper()}"


def _label(prefix: str, field: str) -> str:
    return f"{env_name(prefix, field)} (--{field.replace('_', '-')})"


def load(cls: type[T], prefix: str, argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
         *, single_process: str = "", **overrides: Any) -> T:
    """Builds `cls` from env, then argv, then keyword overrides; validates; raises ConfigError.

    `single_process`: why this service runs in one process only; a `processes` other than 1 is refused
    with that reason."""
    env = os.environ if env is None else env
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    values: dict[str, Any] = {}
    errors: list[str] = []
    for f in fields:
        key = env_name(prefix, f.name)
        if key in env:
            try:
                values[f.name] = _convert(_label(prefix, f.name), env[key], hints[f.name])
            except ConfigError as e:
                errors.append(str(e))
    if argv is not None:
        parser = argparse.ArgumentParser(prog=f"{prefix.lower()}", description=f"Settings also read from {prefix}_* variables.")
        for f in fields:
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                                help=f"{f.metadata.get('help', '')} [env {env_name(prefix, f.name)}, default {f.default!r}]")
        ns = parser.parse_args(list(argv))
        for f in fields:
            raw = getattr(ns, f.name)
            if raw is not None:
                try:
                    values[f.name] = _convert(_label(prefix, f.name), raw, hints[f.name])
                except ConfigError as e:
                    errors.append(str(e))
    values.update(overrides)
    for f in fields:
        if f.name not in values:
            continue
        v, meta = values[f.name], f.metadata
        label = _label(prefix, f.name)
        if meta.get("choices") and v not in meta["choices"]:
            errors.append(f"{label}: {v!r} is not one of {', '.join(map(str, meta['choices']))}")
        if meta.get("minimum") is not None and isinstance(v, (int, float)) and v < meta["minimum"]:
            errors.append(f"{label}: {v!r} is below the minimum {meta['minimum']}")
        if meta.get("check") and (msg := meta["check"](v)):
            errors.append(f"{label}: {msg}")
        if f.name == "processes" and single_process and v != 1:
            errors.append(f"{label}: must be 1 here: {single_process}")
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    cfg = cls(**values)
    relations = getattr(cfg, "relation_problems", None)
    if relations is not None and (errors := relations(lambda name: _label(prefix, name))):
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    return cfg


def redacted(cfg: Any) -> dict[str, Any]:
    """The effective settings with secrets masked, for the startup log line."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = "***" if f.metadata.get("secret") and v else v
    return out


def load_or_exit(cls: type[T], prefix: str, argv: Sequence[str] | None = None, *, single_process: str = "") -> T:
    """`load` for entry points: a bad setting prints one clear message and exits 2."""
    try:
        return load(cls, prefix, sys.argv[1:] if argv is None else argv, single_process=single_process)
    except ConfigError as e:
        print(f"{prefix.lower()}: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def describe(cls: type, prefix: str) -> list[tuple[str, str, str]]:
    """(env var, default, help) rows, for documentation tables."""
    return [(env_name(prefix, f.name), repr(f.default), f.metadata.get("help", "")) for f in dataclasses.fields(cls)]
