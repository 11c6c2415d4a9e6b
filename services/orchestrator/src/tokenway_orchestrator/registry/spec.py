"""What the orchestrator serves, as configured: the models file (YAML or JSON) or the address settings.

    # models.yaml (TOKENWAY_ORCHESTRATOR_MODELS=models.yaml); JSON with the same shape works too
    tokenizers: ["127.0.0.1:50052"]            # shared: each serves the models with its fingerprint
    replicas: ["dns:///inference.ns.svc.cluster.local:50053"]   # discovered: GetModelInfo names the model
    models:
      - name: tokenway-tiny                    # the public name (the engine's own name may differ)
        aliases: [tiny]
        tokenizers: ["127.0.0.1:50052"]        # optional: else any shared tokenizer with its fingerprint
        replicas:                              # this model's: a replica serving another model is refused
          - "127.0.0.1:50053"
          - {address: "127.0.0.1:50063", weight: 2}   # declared capacity: twice the traffic at equal load
        routing: prefix                        # prefix | least_load | round_robin (default: ROUTING)
        fallback: tokenway-pico                # serves it while this model has no ready replica
        limits: {max_n: 4, max_prompts: 8, max_stop_strings: 4, max_stop_string_chars: 64}

An address is host:port, or dns:///host:port: that name is resolved again and again (every
DNS_REFRESH_SECONDS) and each address it gives is one replica (a Kubernetes headless Service gives one
per ready pod). Without a file the settings say the same thing: TOKENIZER_ADDRESS and
INFERENCE_ADDRESSES (comma-separated) are shared peers, and each model is found from its replicas.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

ROUTING_POLICIES = ("prefix", "least_load", "round_robin")
LIMIT_NAMES = ("max_n", "max_prompts", "max_stop_strings", "max_stop_string_chars")
DNS_SCHEME = "dns:///"


class SpecError(ValueError):
    """The models file (or the settings) do not describe a valid set of models."""


@dataclasses.dataclass(frozen=True)
class ReplicaSpec:
    address: str  # host:port or dns:///host:port
    weight: float = 1.0
    model: str = ""  # the model it was listed under ("": discovered)


@dataclasses.dataclass(frozen=True)
class TokenizerSpec:
    address: str
    model: str = ""  # the model it was listed under ("": shared)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    aliases: tuple[str, ...] = ()
    routing: str = ""  # "": the ROUTING setting
    fallback: str = ""
    limits: tuple[tuple[str, int], ...] = ()  # overrides of the settings' max_n, max_prompts, ...
    tokenizers_listed: bool = False  # its own tokenizers only (else any shared one with its fingerprint)


@dataclasses.dataclass(frozen=True)
class RegistrySpec:
    models: tuple[ModelSpec, ...] = ()
    tokenizers: tuple[TokenizerSpec, ...] = ()  # every tokenizer, shared and per model
    replicas: tuple[ReplicaSpec, ...] = ()  # every replica, discovered and per model

    def model(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)


def check_address(address: str, where: str) -> str:
    if not isinstance(address, str) or not address.strip():
        raise SpecError(f"{where}: an address must be a non-empty host:port string")
    address = address.strip()
    bare = address[len(DNS_SCHEME):] if address.startswith(DNS_SCHEME) else address
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecError(f"{where}: {address!r} is not host:port (or dns:///host:port)")
    return address


def _keys(obj: Any, allowed: Sequence[str], where: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (known: {', '.join(allowed)})")
    return obj


def _strings(obj: Any, where: str) -> tuple[str, ...]:
    if obj is None:
        return ()
    if isinstance(obj, str):
        obj = [obj]
    if not isinstance(obj, list) or not all(isinstance(x, str) and x.strip() for x in obj):
        raise SpecError(f"{where}: expected a list of non-empty strings")
    return tuple(x.strip() for x in obj)


def _replicas(obj: Any, where: str, model: str) -> list[ReplicaSpec]:
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise SpecError(f"{where}: expected a list of addresses")
    out = []
    for i, item in enumerate(obj):
        here = f"{where}[{i}]"
        if isinstance(item, str):
            out.append(ReplicaSpec(check_address(item, here), model=model))
            continue
        item = _keys(item, ("address", "weight"), here)
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1e6:
            raise SpecError(f"{here}.weight: must be a number > 0")
        out.append(ReplicaSpec(check_address(item.get("address"), f"{here}.address"), float(weight), model))
    return out


def parse(text: str, source: str = "models file") -> RegistrySpec:
    """A RegistrySpec from a models file's text (YAML, or JSON); raises SpecError naming what is wrong."""
    try:
        doc = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML/JSON: {exc}") from None
    doc = _keys(doc or {}, ("models", "tokenizers", "replicas"), source)
    tokenizers = [TokenizerSpec(check_address(a, f"{source}: tokenizers"))
                  for a in _strings(doc.get("tokenizers"), f"{source}: tokenizers")]
    replicas = _replicas(doc.get("replicas"), f"{source}: replicas", "")
    models: list[ModelSpec] = []
    raw_models = doc.get("models") or []
    if not isinstance(raw_models, list):
        raise SpecError(f"{source}: models: expected a list of models")
    names: dict[str, str] = {}
    for i, m in enumerate(raw_models):
        where = f"{source}: models[{i}]"
        m = _keys(m, ("name", "aliases", "tokenizers", "replicas", "routing", "fallback", "limits"), where)
        name = m.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"{where}.name: required")
        name = name.strip()
        aliases = _strings(m.get("aliases"), f"{where}.aliases")
        for n in (name, *aliases):
            if n in names:
                raise SpecError(f"{where}: the name {n!r} is already used by model {names[n]!r}")
            names[n] = name
        routing = m.get("routing") or ""
        if routing and routing not in ROUTING_POLICIES:
            raise SpecError(f"{where}.routing: {routing!r} is not one of {', '.join(ROUTING_POLICIES)}")
        fallback = m.get("fallback") or ""
        if not isinstance(fallback, str):
            raise SpecError(f"{where}.fallback: must be a model name")
        limits = _keys(m.get("limits") or {}, LIMIT_NAMES, f"{where}.limits")
        for k, v in limits.items():
            least = 0 if k == "max_stop_strings" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise SpecError(f"{where}.limits.{k}: must be a whole number >= {least}")
        own_tokenizers = _strings(m.get("tokenizers"), f"{where}.tokenizers")
        tokenizers += [TokenizerSpec(check_address(a, f"{where}.tokenizers"), name) for a in own_tokenizers]
        replicas += _replicas(m.get("replicas"), f"{where}.replicas", name)
        models.append(ModelSpec(name, aliases, routing, fallback.strip(), tuple(sorted(limits.items())),
                                bool(own_tokenizers)))
    for m in models:
        if m.fallback and m.fallback not in names:
            raise SpecError(f"{source}: model {m.name!r}: its fallback {m.fallback!r} is not a configured model")
        if m.fallback and names[m.fallback] == m.name:
            raise SpecError(f"{source}: model {m.name!r} cannot be its own fallback")
    seen: dict[str, str] = {}
    for r in replicas:
        if r.address in seen and seen[r.address] != r.model:
            raise SpecError(f"{source}: replica {r.address} is listed for two models ({seen[r.address] or 'discovered'}, "
                            f"{r.model or 'discovered'})")
        seen[r.address] = r.model
    if not tokenizers:
        raise SpecError(f"{source}: no tokenizer: list tokenizers at the top level or under a model")
    if not replicas:
        raise SpecError(f"{source}: no inference replica: list replicas at the top level or under a model")
    return RegistrySpec(tuple(models), tuple(dict.fromkeys(tokenizers)), tuple(_merge(replicas)))


def _merge(replicas: list[ReplicaSpec]) -> list[ReplicaSpec]:
    """One spec per address (the first one listed)."""
    out: dict[str, ReplicaSpec] = {}
    for r in replicas:
        out.setdefault(r.address, r)
    return list(out.values())


def from_settings(tokenizer_address: str, inference_addresses: Sequence[str]) -> RegistrySpec:
    """The settings' peers: shared tokenizers, discovered replicas."""
    tokenizers = [TokenizerSpec(check_address(a, "tokenizer_address")) for a in tokenizer_address.split(",") if a.strip()]
    if not tokenizers:
        raise SpecError("tokenizer_address: at least one address is required")
    replicas = [ReplicaSpec(check_address(a, "inference_addresses")) for a in inference_addresses]
    return RegistrySpec((), tuple(dict.fromkeys(tokenizers)), tuple(_merge(replicas)))


def dump(spec: RegistrySpec) -> str:
    """The spec as JSON (for logs and `--check`)."""
    return json.dumps(dataclasses.asdict(spec), indent=1)
