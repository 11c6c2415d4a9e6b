"""The models file: what it may say, and the clear error for what it may not."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tokenway_orchestrator.registry.spec import ReplicaSpec, SpecError, TokenizerSpec, from_settings, parse

GOOD = """
tokenizers: ["127.0.0.1:50052"]
replicas: ["dns:///inference.default.svc.cluster.local:50053"]
models:
  - name: tokenway-tiny
    aliases: [tiny, default]
    replicas:
      - "127.0.0.1:50063"
      - {address: "127.0.0.1:50064", weight: 3}
    routing: least_load
    fallback: pico
    limits: {max_n: 4, max_stop_strings: 0}
  - name: tokenway-pico
    aliases: [pico]
    tokenizers: ["127.0.0.1:50062"]
    replicas: ["127.0.0.1:50073"]
"""


def test_a_models_file_names_models_aliases_peers_weights_and_fallbacks():
    spec = parse(GOOD)
    tiny, pico = spec.models
    assert (tiny.name, tiny.aliases, tiny.routing, tiny.fallback) == ("tokenway-tiny", ("tiny", "default"),
                                                                      "least_load", "pico")
    assert dict(tiny.limits) == {"max_n": 4, "max_stop_strings": 0} and not tiny.tokenizers_listed
    assert pico.tokenizers_listed and pico.fallback == ""
    assert spec.tokenizers == (TokenizerSpec("127.0.0.1:50052"), TokenizerSpec("127.0.0.1:50062", "tokenway-pico"))
    assert spec.replicas == (ReplicaSpec("dns:///inference.default.svc.cluster.local:50053"),
                             ReplicaSpec("127.0.0.1:50063", 1.0, "tokenway-tiny"),
                             ReplicaSpec("127.0.0.1:50064", 3.0, "tokenway-tiny"),
                             ReplicaSpec("127.0.0.1:50073", 1.0, "tokenway-pico"))


def test_json_is_a_models_file_too():
    spec = parse('{"tokenizers": ["a:1"], "models": [{"name": "m", "replicas": ["b:2"]}]}')
    assert spec.models[0].name == "m" and spec.replicas == (ReplicaSpec("b:2", 1.0, "m"),)


@pytest.mark.parametrize("text, words", [
    ("tokenizers: [a:1]\nreplicas: [b:2]\nmodel: []", "unknown key(s) model"),
    ("tokenizers: [a:1]\nmodels: [{name: m, replicas: [b:2], weight: 2}]", "unknown key(s) weight"),
    ("tokenizers: [a:1]\nmodels: [{name: m, aliases: [x], replicas: [b:2]}, {name: x, replicas: [c:3]}]",
     "'x' is already used by model 'm'"),
    ("tokenizers: [a:1]\nmodels: [{name: m, fallback: nope, replicas: [b:2]}]", "fallback 'nope' is not"),
    ("tokenizers: [a:1]\nmodels: [{name: m, aliases: [n], fallback: n, replicas: [b:2]}]", "its own fallback"),
    ("tokenizers: [a:1]\nmodels: [{name: m, routing: random, replicas: [b:2]}]", "'random' is not one of"),
    ("tokenizers: [a:1]\nmodels: [{name: m, replicas: [{address: 'b:2', weight: 0}]}]", "weight: must be"),
    ("tokenizers: [a:1]\nmodels: [{name: m, replicas: [b]}]", "'b' is not host:port"),
    ("tokenizers: [a:1]\nmodels: [{name: m, replicas: ['b:99999']}]", "is not host:port"),
    ("tokenizers: [a:1]\nmodels: [{name: m, limits: {max_n: 0}, replicas: [b:2]}]", "max_n: must be"),
    ("tokenizers: [a:1]\nmodels: [{name: m, replicas: [b:2]}, {name: n, replicas: [b:2]}]", "listed for two models"),
    ("models: [{name: m, replicas: [b:2]}]", "no tokenizer"),
    ("tokenizers: [a:1]\nmodels: [{name: m}]", "no inference replica"),
    ("tokenizers: [a:1\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping"),
])
def test_a_bad_models_file_is_refused_with_what_is_wrong(text, words):
    with pytest.raises(SpecError) as e:
        parse(text, "models.yaml")
    assert words in str(e.value) and str(e.value).startswith("models.yaml")


def test_without_a_file_the_settings_name_shared_tokenizers_and_discovered_replicas():
    spec = from_settings("127.0.0.1:50052, dns:///tok.ns:50052", ("127.0.0.1:50053", "127.0.0.1:50053", "h:1"))
    assert spec.models == ()
    assert [t.address for t in spec.tokenizers] == ["127.0.0.1:50052", "dns:///tok.ns:50052"]
    assert [(r.address, r.model) for r in spec.replicas] == [("127.0.0.1:50053", ""), ("h:1", "")]


def test_a_bad_models_file_stops_the_start_with_its_error(tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text("tokenizers: [a:1]\nmodels: [{name: m, fallback: gone, replicas: [b:2]}]\n")
    out = subprocess.run([sys.executable, "-m", "tokenway_orchestrator", "--models", str(bad), "--port", "0",
                          "--store", str(tmp_path / "t.db")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"orchestrator: cannot start: {bad}: model 'm': its fallback 'gone' is not a configured model" in out.stderr
    assert "Traceback" not in out.stderr
