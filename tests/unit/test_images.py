"""Every container image (deploy/images/*.Dockerfile), checked offline: no Docker, no registry.

Reads each Dockerfile as Docker does (continuations joined, comments dropped, stages split at FROM) and asserts
what someone running the images would notice: pinned bases, a non-root numeric user, nothing writable outside
declared volumes, the model mounted rather than baked in, packages exactly from a lock, an entry point, a port
and settings the service really has, and a health check that asks the right health name. The health check
script itself runs here against real gRPC and HTTP servers, plaintext and mTLS.
hadolint lints the same files in `make deploy-check`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import http.server
import json
import re
import shlex
import subprocess
import sys
import threading

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.conftest import ROOT

IMAGES = ROOT / "deploy" / "images"
HEALTH = IMAGES / "health.py"


def health_names() -> dict[str, str]:
    from tokenway.v1 import chat_pb2
    from tokenway_inference.app import SERVICE_NAME as INFERENCE
    from tokenway_tokenizer.config import SERVICE_NAME as TOKENIZER

    return {"orchestrator": chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
            "tokenizer": TOKENIZER, "inference": INFERENCE}


def settings(service: str) -> set[str]:
    """Every TOKENWAY_* variable `service` reads."""
    if service == "envoy":  # tools/envoy.py reads its settings from the environment by name
        return set(re.findall(r"TOKENWAY_[A-Z_]+[A-Z]", (ROOT / "tools" / "envoy.py").read_text())) | {"TOKENWAY_MODEL"}
    from tokenway_inference.config import PREFIX as INF, InferenceSettings
    from tokenway_orchestrator.config import PREFIX as ORCH, OrchestratorSettings
    from tokenway_tokenizer.config import ENV_PREFIX as TOK, TokenizerSettings

    prefix, cls = {"orchestrator": (ORCH, OrchestratorSettings), "tokenizer": (TOK, TokenizerSettings),
                   "inference": (INF, InferenceSettings)}[service]
    names = {f"{prefix}_{f.name.upper()}" for f in dataclasses.fields(cls)}
    return names | ({"TOKENWAY_MODEL"} if service != "orchestrator" else set())


@dataclasses.dataclass
class Image:
    name: str  # the file's stem: orchestrator, tokenizer, inference-cpu, inference-gpu, envoy
    service: str  # whose settings it sets: orchestrator, tokenizer, inference, envoy
    port: int
    metrics: int | None
    stages: list[list[tuple[str, str]]]  # per FROM: (INSTRUCTION, arguments)

    @property
    def final(self) -> list[tuple[str, str]]:
        return self.stages[-1]

    def args_of(self, name: str, stage: list[tuple[str, str]] | None = None) -> list[str]:
        return [a for i, a in (self.final if stage is None else stage) if i == name]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for a in self.args_of("ENV"):
            for item in shlex.split(a):
                key, _, value = item.partition("=")
                values[key] = value
        return values

    def volumes(self) -> list[str]:
        return [v for a in self.args_of("VOLUME") for v in json.loads(a)]

    def copies(self, stage=None) -> list[tuple[list[str], str, str]]:
        """(sources, destination, --from stage or "") of every COPY and ADD, in one stage or all."""
        out = []
        for st in self.stages if stage is None else [stage]:
            for i, a in st:
                if i in ("COPY", "ADD"):
                    words = shlex.split(a)
                    origin = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), "")
                    parts = [w for w in words if not w.startswith("--")]
                    out.append((parts[:-1], parts[-1], origin))
        return out

    def healthcheck(self) -> list[str]:
        (check,) = self.args_of("HEALTHCHECK")
        return json.loads(check[check.index("CMD") + 3:].strip())


def parse(path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    current = ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#"):
            continue  # comments, also inside a continued instruction (Docker drops those too)
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            word, _, args = current.strip().partition(" ")
            if word.upper() == "FROM":
                stages.append([])
            stages[-1].append((word.upper(), args.strip()))
        current = ""
    return stages


# image: (service, gRPC or HTTP port, metrics port); the metrics ports are the ones Kubernetes scrapes (deploy/k8s)
SPECS = {"orchestrator": ("orchestrator", 50051, 9091), "tokenizer": ("tokenizer", 50052, 9092),
         "inference-cpu": ("inference", 50053, 9093), "inference-gpu": ("inference", 50053, 9093),
         "envoy": ("envoy", 8080, None)}


def image(name: str) -> Image:
    service, port, metrics = SPECS[name]
    return Image(name, service, port, metrics, parse(IMAGES / f"{name}.Dockerfile"))


ALL = sorted(SPECS)


def test_every_dockerfile_is_one_of_the_checked_images():
    assert sorted(p.name.removesuffix(".Dockerfile") for p in IMAGES.glob("*.Dockerfile")) == ALL


@pytest.mark.parametrize("name", ALL)
def test_every_base_image_is_pinned_to_an_exact_version(name):
    img = image(name)
    stage_names = set()
    for stage in img.stages:
        words = stage[0][1].split()
        ref = words[0]
        if len(words) == 3 and words[1].upper() == "AS":
            stage_names.add(words[2])
        if ref in stage_names or "@sha256:" in ref:
            continue
        repo, _, tag = ref.rpartition(":")
        assert repo and tag and tag != "latest", f"FROM {ref}: pin a tag or a digest"
        assert re.match(r"\d+\.\d+\.\d+", tag), f"FROM {ref}: the tag names no exact version"
    bases = {s[0][1].split()[0] for s in img.stages} - stage_names
    assert len(bases) == 1, f"one base for every stage, so the venv copied between them runs: {bases}"


@pytest.mark.parametrize("name", ALL)
def test_the_service_runs_as_uid_10001_never_root(name):
    img = image(name)
    users = img.args_of("USER")
    assert users and users[-1] == "10001:10001", f"USER {users}: numeric, so runAsNonRoot can verify it"
    kinds = [i for i, _ in img.final]
    assert kinds.index("ENTRYPOINT") > max(k for k, i in enumerate(kinds) if i == "USER")
    assert any("useradd" in r and "--uid 10001" in r for r in img.args_of("RUN")), "no user 10001 in /etc/passwd"


@pytest.mark.parametrize("name", [n for n in ALL if n != "inference-gpu"])
def test_the_runtime_stage_holds_the_venv_not_the_sources(name):
    img = image(name)
    assert len(img.stages) >= 2, "one stage: build tools and sources stay in the image"
    for sources, dest, origin in img.copies(img.final):
        if origin:
            assert sources == ["/opt/tokenway/venv"], (sources, dest)
        else:  # the health check, and Envoy's renderer and its inputs
            assert all(s.startswith(("deploy/images/health.py", "tools/envoy.py", "deploy/envoy", "gen/descriptors"))
                       for s in sources), sources
    assert not img.args_of("RUN", img.final) or all("pip" not in r for r in img.args_of("RUN", img.final))


@pytest.mark.parametrize("name", ALL)
def test_packages_come_exactly_from_a_lock(name):
    img = image(name)
    installs = [a for st in img.stages for a in img.args_of("RUN", st) if "pip install" in a]
    assert installs
    for run in installs:
        for cmd in run.split("&&"):
            if "pip install" in cmd:
                assert "--no-deps" in cmd, f"pip may resolve (and drift from the lock): {cmd.strip()}"
    lock_copies = [(s[0], d) for s, d, _ in img.copies() if s and s[0].endswith(".lock")]
    assert len(lock_copies) == 1, lock_copies
    src, dest = lock_copies[0]
    assert any(f"-r {dest}" in a or dest in a for a in installs), "the copied lock is never installed"
    pins = [line for line in (ROOT / src).read_text().splitlines() if line and not line.startswith("#")]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+", p) for p in pins), "every line name==version"


@pytest.mark.parametrize("name", ["orchestrator", "tokenizer", "inference-cpu", "envoy"])
def test_the_locks_hold_the_versions_the_tests_run(name):
    """deploy/images/lock.py resolves with requirements.txt as constraints; a hand edit would break that."""
    def pins(text):
        return {n.lower().replace("_", "-"): v for n, _, v in
                (line.partition("==") for line in text.splitlines() if "==" in line and not line.startswith("#"))}

    ours = pins((IMAGES / f"{name}.lock").read_text())
    tested = pins((ROOT / "requirements.txt").read_text())
    drift = {n: (v, tested[n]) for n, v in ours.items() if n in tested and tested[n] != v}
    assert not drift, f"run python deploy/images/lock.py {name}: {drift}"


@pytest.mark.parametrize("name", [n for n in ALL if n != "envoy"])
def test_tokenway_is_installed_as_packages_not_editable(name):
    img = image(name)
    service = img.service
    run = " ".join(a for st in img.stages for a in img.args_of("RUN", st))
    assert " -e " not in run and "--editable" not in run
    for src in ("gen/python", "libs/tokenway_common", f"services/{service}"):
        assert any(src in s for s, _, _ in img.copies()), f"{src} is not copied"
        assert re.search(rf"pip install[^&]*{re.escape(src)}", run), f"{src} is copied but not installed"
    assert "pip check" in run
    assert f"import tokenway_{service}" in run.replace("import vllm, ", "import ").replace("import torch, ", "import ")


@pytest.mark.parametrize("name", ALL)
def test_no_model_is_copied_into_any_image(name):
    img = image(name)
    for sources, dest, origin in img.copies():
        assert not dest.startswith("/models"), f"COPY into {dest}: the model must be mounted"
        for src in sources if not origin else []:
            assert not src.startswith((".tokenway", "models")), f"COPY {src}: the model must be mounted"
            path = ROOT / src
            files = path.rglob("*") if path.is_dir() else [path]
            heavy = [f for f in files if f.suffix in (".safetensors", ".bin", ".gguf", ".pt")]
            assert not heavy, f"COPY {src} would bake weights in: {heavy[:3]}"
    if img.service in ("tokenizer", "inference"):
        assert img.env()["TOKENWAY_MODEL"] == "/models/model"
    assert ".tokenway" in (ROOT / ".dockerignore").read_text().splitlines()


@pytest.mark.parametrize("name", ALL)
def test_every_copied_path_exists_and_is_in_the_build_context(name):
    ignored = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    for sources, _, origin in image(name).copies():
        if origin:
            continue
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such path in the repository"
            hit = [p for p in ignored if fnmatch.fnmatch(src, p) or src.startswith(p.rstrip("/") + "/")]
            assert not hit, f"COPY {src} is excluded from the build context by .dockerignore {hit}"


@pytest.mark.parametrize("name", ALL)
def test_every_tokenway_setting_an_image_sets_is_one_its_service_reads(name):
    img = image(name)
    ours = {k for k in img.env() if k.startswith("TOKENWAY_")}
    unknown = ours - settings(img.service)
    assert not unknown, f"settings {img.service} does not read: {sorted(unknown)}"


@pytest.mark.parametrize("name", ALL)
def test_the_entrypoint_runs_the_service_on_every_interface_on_its_port(name):
    img = image(name)
    (entry,) = img.args_of("ENTRYPOINT")
    argv = json.loads(entry)  # exec form: SIGTERM reaches the service, which drains
    e = img.env()
    if img.service == "envoy":
        assert argv[:3] == ["python", "/opt/tokenway/tools/envoy.py", "run"], argv
        assert argv[argv.index("--out") + 1].startswith("/tmp/"), "the rendered config must go to a volume"
        assert ["tools/envoy.py"] in [s for s, d, _ in img.copies() if d == argv[1]]
        assert e["TOKENWAY_ENVOY_HOST"] == "0.0.0.0"
        assert e["TOKENWAY_ENVOY_PORT"] == str(img.port)
    else:
        assert argv == ["python", "-m", f"tokenway_{img.service}"], argv
        assert (ROOT / "services" / img.service / "src" / argv[2] / "__main__.py").is_file()
        prefix = f"TOKENWAY_{img.service.upper()}"
        assert e[f"{prefix}_HOST"] == "0.0.0.0"
        assert e[f"{prefix}_PORT"] == str(img.port)
        assert e[f"{prefix}_METRICS_PORT"] == str(img.metrics)  # Prometheus, on the same host
    assert img.args_of("EXPOSE") == [" ".join(str(p) for p in (img.port, img.metrics) if p)]
    assert "/opt/tokenway/venv/bin" in e.get("PATH", "/opt/tokenway/venv/bin")


@pytest.mark.parametrize("name", ALL)
def test_nothing_outside_the_declared_volumes_needs_to_be_writable(name):
    """Kubernetes runs every image with readOnlyRootFilesystem and mounts emptyDirs at the volumes."""
    img = image(name)
    volumes, e = img.volumes(), img.env()
    assert "/tmp" in volumes
    for var in ("HOME", "HF_HOME", "XDG_CACHE_HOME", "VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR"):
        if var in e:
            assert any(e[var] == v or e[var].startswith(v + "/") for v in volumes), f"{var}={e[var]} outside {volumes}"
    assert e["HOME"] == "/tmp"
    if img.service == "orchestrator":  # the SQLite store (one orchestrator; replicas share PostgreSQL)
        store = e["TOKENWAY_ORCHESTRATOR_STORE"]
        assert any(store.startswith(v + "/") for v in volumes), store
        assert any("chown 10001:10001 /var/lib/tokenway" in r for r in img.args_of("RUN"))


@pytest.mark.parametrize("name", ALL)
def test_the_healthcheck_asks_the_services_own_health_name(name):
    img = image(name)
    argv = img.healthcheck()
    assert argv[:2] == ["python", "/opt/tokenway/health.py"], argv
    assert ["deploy/images/health.py"] in [s for s, d, _ in img.copies(img.final) if d == argv[1]]
    prefix = argv[argv.index("--prefix") + 1]
    assert f"{prefix}_PORT" in img.env()
    if img.service == "envoy":
        assert argv[argv.index("--http") + 1] == "/health"
    else:
        assert prefix == f"TOKENWAY_{img.service.upper()}"
        assert argv[argv.index("--service") + 1] == health_names()[img.service]


# -- the health check script, against real servers -------------------------------------------------------------


async def _health_server(status, *, tls=None):
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    await servicer.set("tokenway.tokenizer.v1.TokenizerService", status)
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", tls) if tls else server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def _run_health(env, *args):
    import asyncio

    proc = await asyncio.create_subprocess_exec(sys.executable, str(HEALTH), "--prefix", "TOKENWAY_TOKENIZER", *args,
                                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode, out.decode()


async def test_health_script_exits_0_only_while_the_service_is_serving():
    import os

    for status, want in ((health_pb2.HealthCheckResponse.SERVING, 0), (health_pb2.HealthCheckResponse.NOT_SERVING, 1)):
        server, port = await _health_server(status)
        try:
            env = dict(os.environ, TOKENWAY_TOKENIZER_PORT=str(port))
            rc, out = await _run_health(env, "--service", "tokenway.tokenizer.v1.TokenizerService")
            assert rc == want, out
            rc, out = await _run_health(env)  # "": the process itself
            assert rc == 0, out
        finally:
            await server.stop(None)
    rc, out = await _run_health(dict(os.environ, TOKENWAY_TOKENIZER_PORT=str(port)))  # nothing listens any more
    assert rc == 1 and "UNAVAILABLE" in out


async def test_health_script_speaks_mtls_when_the_service_does(tmp_path):
    import os

    from tests.tlscerts import make_certs

    certs = make_certs(tmp_path)
    read = lambda p: open(p, "rb").read()  # noqa: E731
    creds = grpc.ssl_server_credentials([(read(certs.server_key), read(certs.server_cert))],
                                        root_certificates=read(certs.ca), require_client_auth=True)
    server, port = await _health_server(health_pb2.HealthCheckResponse.SERVING, tls=creds)
    try:
        # the service's own settings: its certificate (also presented as the client's) and the CA of its clients
        env = dict(os.environ, TOKENWAY_TOKENIZER_PORT=str(port), TOKENWAY_TOKENIZER_TLS_CERT=certs.client_cert,
                   TOKENWAY_TOKENIZER_TLS_KEY=certs.client_key, TOKENWAY_TOKENIZER_TLS_CLIENT_CA=certs.ca)
        rc, out = await _run_health(env, "--service", "tokenway.tokenizer.v1.TokenizerService")
        assert rc == 0, out
        rc, out = await _run_health(dict(env, TOKENWAY_TOKENIZER_TLS_CLIENT_CA=certs.other_ca),
                                    "--service", "tokenway.tokenizer.v1.TokenizerService")
        assert rc == 1, out  # a CA that did not sign the server's certificate
    finally:
        await server.stop(None)


def test_health_script_http_mode_follows_envoys_health_status():
    import os

    codes = iter([200, 503])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(next(codes) if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        env = dict(os.environ, TOKENWAY_ENVOY_PORT=str(httpd.server_address[1]))
        cmd = [sys.executable, str(HEALTH), "--prefix", "TOKENWAY_ENVOY", "--http", "/health"]
        assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
        assert subprocess.run(cmd, env=env, capture_output=True).returncode == 1
    finally:
        httpd.shutdown()


# -- the images on one host: deploy/compose/compose.yaml ------------------------------------------------------

COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"


def compose() -> dict:

    import yaml

    # Compose interpolates ${VAR:-default}: here with every variable unset (the defaults), as deploy-check does
    text = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}", lambda m: m.group(2) or "",
                  COMPOSE.read_text())
    return yaml.safe_load(text)  # PyYAML applies the << merge keys as Compose does


COMPOSE_IMAGES = {"orchestrator": "orchestrator", "tokenizer": "tokenizer", "inference": "inference-cpu", "envoy": "envoy"}


@pytest.mark.parametrize("name", sorted(COMPOSE_IMAGES))
def test_compose_builds_each_service_from_its_dockerfile_hardened(name):
    svc = compose()["services"][name]
    image = COMPOSE_IMAGES[name]
    assert svc["build"] == {"context": "../..", "dockerfile": f"deploy/images/{image}.Dockerfile"}
    assert (COMPOSE.parent / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve().is_file()
    assert svc["image"] == f"tokenway-{image}:0.1.0"  # the name and tag deploy/k8s/base uses
    assert svc["read_only"] is True and svc["user"] == "10001:10001" and svc["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in svc["security_opt"]
    assert any(t.startswith("/tmp:") for t in svc["tmpfs"])
    for port in svc.get("ports", []):
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
    for dep in svc.get("depends_on", []):
        assert dep in compose()["services"]
    for v in svc.get("volumes", []):
        if v["type"] == "volume":
            assert v["source"] in compose()["volumes"]


@pytest.mark.parametrize("name", sorted(COMPOSE_IMAGES))
def test_compose_sets_only_settings_the_services_read_and_stops_after_the_grace(name):
    svc = compose()["services"][name]
    service = image(COMPOSE_IMAGES[name]).service
    env = svc.get("environment", {})
    unknown = {k for k in env if k.startswith("TOKENWAY_")} - settings(service)
    assert not unknown, unknown
    if service != "envoy":
        prefix = f"TOKENWAY_{service.upper()}"
        grace = float(env.get(f"{prefix}_GRACE_SECONDS", 10)) + float(env.get(f"{prefix}_DRAIN_SECONDS", 0))
        assert float(svc["stop_grace_period"].removesuffix("s")) >= grace + 5


def test_compose_mounts_one_model_read_only_and_wires_the_peers():
    services = compose()["services"]
    sources = set()
    for name in ("tokenizer", "inference"):
        (model,) = [v for v in services[name]["volumes"] if v["target"] == "/models/model"]
        assert model["type"] == "bind" and model["read_only"] is True
        sources.add(model["source"])
    (source,) = sources  # the same directory: equal tokenizer fingerprints
    assert (COMPOSE.parent / source).resolve() == (ROOT / ".tokenway" / "models" / "tokenway-tiny")
    assert services["inference"]["environment"]["TOKENWAY_INFERENCE_ENGINE"] == "transformers"
    orch = services["orchestrator"]["environment"]
    assert orch["TOKENWAY_ORCHESTRATOR_TOKENIZER_ADDRESS"] == "dns:///tokenizer:50052"
    assert orch["TOKENWAY_ORCHESTRATOR_INFERENCE_ADDRESSES"] == "dns:///inference:50053"
    assert orch["TOKENWAY_ORCHESTRATOR_AUTH"] == "on"
    (store,) = services["orchestrator"]["volumes"]
    assert orch["TOKENWAY_ORCHESTRATOR_STORE"].startswith(store["target"] + "/")
    assert services["envoy"]["environment"]["TOKENWAY_ENVOY_ORCHESTRATOR_HOST"] == "orchestrator"


@pytest.mark.parametrize("name", ["orchestrator", "tokenizer", "inference-cpu", "envoy"])
def test_every_dependency_tokenway_declares_is_in_its_images_lock(name):
    """A dependency added to a pyproject.toml without `python deploy/images/lock.py` fails the image's pip check
    at build time; here it fails offline."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tokenway_images_lock", IMAGES / "lock.py")
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    pins = dict(line.split("==", 1) for line in (IMAGES / f"{name}.lock").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert not lock.check(name, pins), f"run python deploy/images/lock.py {name}"
