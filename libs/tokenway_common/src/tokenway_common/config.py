"""Configuration from prefixed environment variables, mirrored as CLI flags, parsed once.

A service declares a frozen dataclass whose fields carry `setting(...)` metadata; `load()` reads
`<PREFIX>_<FIELD>` from the environment, then `--field-name` from argv (flags win), converts and
validates every value, and raises ConfigError with one clear line per bad setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
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
    processes: int = setting(1, "server processes sharing the port (Linux SO_REUSEPORT: the kernel spreads "
                                "connections over them) under one supervisor; 0: one per core, at most 8",
                             minimum=0)


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
    return cls(**values)


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
