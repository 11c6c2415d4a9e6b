"""Renders tokenway's kustomizations with the pinned kustomize (.tokenway/bin/kustomize: tools/setup.sh deploy).

    python deploy/k8s/render.py [TARGET ...]    print the rendered YAML (default: every target)

Targets: the overlays (dev, prod) and every-component, a kustomization made on the fly in
.tokenway/deploy/ that puts the base and every component together (tls before gpu), so that each component
is rendered and checked even where no overlay uses it. Used by tools/deploy_check.py and tests/unit/test_k8s.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZE = ROOT / ".tokenway" / "bin" / "kustomize"
# every component, in the order that composes: tls replaces the probes, gpu then lengthens the startup probe
COMPONENTS = ["envoy", "tls", "gpu", "autoscaling", "monitoring", "network-policies", "otel"]


def every_component() -> Path:
    work = ROOT / ".tokenway" / "deploy" / "every-component"
    work.mkdir(parents=True, exist_ok=True)
    rel = lambda p: os.path.relpath(p, work)  # noqa: E731 - kustomize wants paths relative to the file
    (work / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "tokenway-check",
        "resources": [rel(K8S / "base")],
        "components": [rel(K8S / "components" / c) for c in COMPONENTS]}, sort_keys=False))
    return work


def targets() -> dict[str, Path]:
    found = {p.name: p for p in sorted((K8S / "overlays").iterdir()) if (p / "kustomization.yaml").is_file()}
    return {**found, "every-component": every_component()}


def build(target: Path) -> str:
    if not KUSTOMIZE.exists():
        sys.exit(f"{KUSTOMIZE} is missing: run tools/setup.sh deploy")
    proc = subprocess.run([str(KUSTOMIZE), "build", str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"kustomize build {target.relative_to(ROOT)}:\n{proc.stderr}")
    return proc.stdout


def objects(target: Path) -> list[dict]:
    return [o for o in yaml.safe_load_all(build(target)) if o]


def main(argv: list[str]) -> int:
    all_targets = targets()
    for name in argv or list(all_targets):
        print(f"# --- {name}\n{build(all_targets[name])}", end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
