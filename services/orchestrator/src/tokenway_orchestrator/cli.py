"""`tokenway`: manage what the orchestrator keeps (API keys for now).

    tokenway [--store PATH|URL] keys create NAME [--owner O] [--models a,b] [--rpm N] [--tpm N] [--concurrency N]
                                        [--quota N] [--quota-period day|month] [--priority interactive|batch]
    tokenway keys list [--all]
    tokenway keys update NAME|ID [--name NEW] [same options as create]
    tokenway keys revoke NAME|ID
    tokenway usage [--since 1h] [--key NAME]   totals per key and model; --format json: the records
    (every command takes --format text|json; json prints one object, or a list, for scripts)

The store is --store, else TOKENWAY_ORCHESTRATOR_STORE, else `.tokenway/tokenway.db`: a SQLite file's path,
or a PostgreSQL URL (`postgresql://user@host:5432/tokenway`) for a store that several orchestrators share.
`create` prints the key once: the store keeps only its SHA-256. Exit status 0, 1 on a refusal (unknown key,
duplicate name, bad value) with the reason on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import sys
import time

from .store import ApiKey, Limits, StoreError, open_store

DEFAULT_STORE = ".tokenway/tokenway.db"


def _limit_args(p: argparse.ArgumentParser, defaults: bool) -> None:
    d = None if not defaults else 0
    p.add_argument("--owner", default=None if not defaults else "")
    p.add_argument("--models", default=None, help="comma-separated model names (default: every model)")
    p.add_argument("--rpm", type=int, default=d, help="requests per minute (0: no limit)")
    p.add_argument("--tpm", type=int, default=d, help="tokens per minute, prompt + completion (0: no limit)")
    p.add_argument("--concurrency", type=int, default=d, help="concurrent requests (0: no limit)")
    p.add_argument("--quota", type=int, default=d, help="tokens per quota period (0: no quota)")
    p.add_argument("--quota-period", choices=("day", "month"), default=None if not defaults else "month")
    p.add_argument("--priority", choices=("interactive", "batch"), default=None if not defaults else "interactive")


def parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=("text", "json"), default="text")
    ap = argparse.ArgumentParser(prog="tokenway", description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=os.environ.get("TOKENWAY_ORCHESTRATOR_STORE", DEFAULT_STORE),
                    help="the store: a SQLite file, or a postgresql:// URL (TOKENWAY_ORCHESTRATOR_STORE; "
                         "default %(default)s)")
    top = ap.add_subparsers(dest="area", required=True)
    keys = top.add_parser("keys", help="API keys").add_subparsers(dest="cmd", required=True)
    create = keys.add_parser("create", parents=[fmt], help="a new key, printed once")
    create.add_argument("name")
    _limit_args(create, defaults=True)
    lst = keys.add_parser("list", parents=[fmt], help="the keys (not their secrets)")
    lst.add_argument("--all", action="store_true", help="revoked ones too")
    update = keys.add_parser("update", parents=[fmt], help="change a key's name, models, limits or priority")
    update.add_argument("key", help="its name or id")
    update.add_argument("--name")
    _limit_args(update, defaults=False)
    revoke = keys.add_parser("revoke", parents=[fmt], help="a key is refused from now on")
    revoke.add_argument("key", help="its name or id")
    usage = top.add_parser("usage", parents=[fmt], help="usage per key and model; json: every record")
    usage.add_argument("--since", default="", help="a duration back from now (90s, 30m, 1h, 7d) or an ISO "
                                                    "date/time (UTC unless it says); default: everything")
    usage.add_argument("--key", help="only this key's (by name)")
    return ap


def since(value: str, now: float | None = None) -> float:
    """`--since` as a UNIX time: a duration back from now, or an ISO 8601 date/time."""
    if not value:
        return 0.0
    now = time.time() if now is None else now
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value.strip())
    if m:
        return now - float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise StoreError("INVALID", f"--since {value!r}: give a duration (90s, 30m, 1h, 7d) or an ISO date") from None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


def _models(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(m.strip() for m in value.split(",") if m.strip())


def _limits(a: argparse.Namespace, base: Limits) -> Limits:
    changes = {f: v for f, v in (("requests_per_minute", a.rpm), ("tokens_per_minute", a.tpm),
                                 ("concurrent_requests", a.concurrency), ("token_quota", a.quota),
                                 ("quota_period", a.quota_period)) if v is not None}
    return dataclasses.replace(base, **changes)


def _when(t: float | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _text(k: ApiKey) -> str:
    lim = k.limits
    return (f"{k.name}  id {k.id}  owner {k.owner or '-'}  models {','.join(k.models) or '*'}  "
            f"rpm {lim.requests_per_minute or '-'}  tpm {lim.tokens_per_minute or '-'}  "
            f"concurrency {lim.concurrent_requests or '-'}  quota {lim.token_quota or '-'}/{lim.quota_period}  "
            f"priority {k.priority}  created {_when(k.created_at)}" + (f"  REVOKED {_when(k.revoked_at)}" if k.revoked else ""))


def run(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    store = open_store(a.store)
    try:
        if a.area == "usage":
            start = since(a.since)
            if a.format == "json":
                print(json.dumps([r.public() for r in store.usage_records(since=start, key=a.key)]))
            else:
                for t in store.usage_totals(since=start, key=a.key):
                    status = ", ".join(f"{k} {v}" for k, v in sorted(t.by_status.items()))
                    print(f"{t.key_name or '-'}  {t.model}  requests {t.requests} ({status})  prompt tokens "
                          f"{t.prompt_tokens}  completion tokens {t.completion_tokens}")
        elif a.cmd == "create":
            key, secret = store.create_key(a.name, owner=a.owner, models=_models(a.models) or (),
                                           limits=_limits(a, Limits()), priority=a.priority)
            if a.format == "json":
                print(json.dumps({**key.public(), "key": secret}))
            else:
                print(_text(key))
                print(f"key (shown once, the store keeps only its hash): {secret}")
        elif a.cmd == "list":
            keys = store.list_keys(include_revoked=a.all)
            print(json.dumps([k.public() for k in keys]) if a.format == "json" else "\n".join(map(_text, keys)))
        elif a.cmd == "update":
            key = store.get_key(a.key)
            key = store.update_key(a.key, name=a.name, owner=a.owner, models=_models(a.models),
                                   limits=_limits(a, key.limits), priority=a.priority)
            print(json.dumps(key.public()) if a.format == "json" else _text(key))
        elif a.cmd == "revoke":
            key = store.revoke_key(a.key)
            print(json.dumps(key.public()) if a.format == "json" else _text(key))
    except StoreError as e:
        print(f"tokenway: {e.reason}: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def main() -> None:
    sys.exit(run())
