"""make deploy-check: every deployment file, checked offline (no Docker engine, no cluster, no registry).

    .tokenway/venv-deploy/bin/python tools/deploy_check.py     (tools/setup.sh deploy installs that venv)

1. hadolint on every deploy/images/*.Dockerfile.
2. kustomize (pinned, .tokenway/bin) renders every overlay and the every-component combination
   (deploy/k8s/render.py) into .tokenway/deploy/rendered/<target>.yaml; standalone deploy/k8s/*.yaml as they are.
3. Every rendered object is validated against the Kubernetes JSON schemas of each version in K8S_SCHEMA_VERSIONS
   (tools/versions.env; strict: unknown fields fail) from kubernetes-validate, and KEDA's ScaledObject and
   prometheus-operator's PodMonitor against deploy/k8s/schemas/ (generate.py); a kind with no schema fails rather than passing unchecked.
4. deploy/compose/compose.yaml is interpolated with its defaults and parsed by compose-spec (the Compose
   specification's types: unknown keys fail).
5. The structural tests, in the project venv: tests/unit/test_images.py, test_gpu_image.py, test_k8s.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "deploy" / "k8s"))
import render  # noqa: E402 - deploy/k8s/render.py

SCHEMAS = ROOT / "deploy" / "k8s" / "schemas"
CUSTOM = {("keda.sh/v1alpha1", "ScaledObject"): SCHEMAS / "keda.sh-v1alpha1-scaledobject.json",
          ("monitoring.coreos.com/v1", "PodMonitor"): SCHEMAS / "monitoring.coreos.com-v1-podmonitor.json"}
BIN = Path(sys.executable).parent
PROJECT_PY = ROOT / ".tokenway" / "venv" / "bin" / "python"


def versions() -> dict[str, str]:
    lines = (ROOT / "tools" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def step(title: str) -> float:
    print(f"\033[1m==> {title}\033[0m", flush=True)
    return time.monotonic()


def hadolint() -> list[str]:
    failures = []
    files = sorted((ROOT / "deploy" / "images").glob("*.Dockerfile"))
    for f in files:
        proc = subprocess.run([str(BIN / "hadolint"), "--no-color", str(f.relative_to(ROOT))], cwd=ROOT,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            failures.append(proc.stdout + proc.stderr)
    print(f"hadolint: {len(files) - len(failures)} of {len(files)} Dockerfiles clean")
    return failures


def validate_objects(name: str, objects: list[dict], k8s_versions: list[str]) -> list[str]:
    import jsonschema
    import kubernetes_validate

    problems = []
    custom = {key: json.loads(path.read_text()) for key, path in CUSTOM.items()}
    for obj in objects:
        what = f"{name}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in custom:
            errors = sorted(jsonschema.Draft202012Validator(custom[key]).iter_errors(obj), key=lambda e: list(e.path))
            problems += [f"{what}: {'.'.join(map(str, e.path))}: {e.message}" for e in errors]
            continue
        for version in k8s_versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{what} (Kubernetes {version}): {'.'.join(map(str, e.path))}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{what}: no schema for {key[0]} {key[1]} in Kubernetes {version}: add one "
                                "under deploy/k8s/schemas/ (tools/deploy_check.py CUSTOM)")
    return problems


def compose() -> list[str]:
    from compose_spec import PyOptions

    path = ROOT / "deploy" / "compose" / "compose.yaml"
    # Compose interpolates ${VAR:-default} before it parses; here with every variable unset (the defaults)
    text = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", path.read_text())
    try:
        project = PyOptions(apply_merge=True).from_yaml(text)
        project.validate()
    except ValueError as e:
        return [f"{path.relative_to(ROOT)}: {e}"]
    print(f"compose: {path.relative_to(ROOT)} parses as the Compose specification "
          f"({', '.join(project.service_names())})")
    return []


def main() -> int:
    start = time.monotonic()
    failed: list[str] = []

    step("hadolint on deploy/images/*.Dockerfile")
    failed += hadolint()

    k8s_versions = versions()["K8S_SCHEMA_VERSIONS"].split(",")
    step(f"kustomize build, then Kubernetes {' and '.join(k8s_versions)} schemas (strict), KEDA's and prometheus-operator's")
    out = ROOT / ".tokenway" / "deploy" / "rendered"
    out.mkdir(parents=True, exist_ok=True)
    for name, target in render.targets().items():
        try:
            text = render.build(target)
        except RuntimeError as e:
            failed.append(str(e))
            continue
        (out / f"{name}.yaml").write_text(text)
        import yaml

        objects = [o for o in yaml.safe_load_all(text) if o]
        problems = validate_objects(name, objects, k8s_versions)
        failed += problems
        kinds = sorted({o["kind"] for o in objects})
        print(f"{name}: {len(objects)} objects, {len(problems)} problems ({', '.join(kinds)}) "
              f"-> {(out / f'{name}.yaml').relative_to(ROOT)}")

    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):  # standalone manifests (model-copy.yaml)
        import yaml

        objects = [o for o in yaml.safe_load_all(path.read_text()) if o]
        problems = validate_objects(path.name, objects, k8s_versions)
        failed += problems
        print(f"{path.relative_to(ROOT)}: {len(objects)} objects, {len(problems)} problems")

    step("docker compose file (compose-spec)")
    failed += compose()

    step("structural tests: tests/unit/test_images.py test_gpu_image.py test_k8s.py")
    tests = [f"tests/unit/{t}" for t in ("test_images.py", "test_gpu_image.py", "test_k8s.py")]
    proc = subprocess.run([str(PROJECT_PY), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT)
    if proc.returncode != 0:
        failed.append(f"pytest {' '.join(tests)} exited {proc.returncode}")

    took = time.monotonic() - start
    if failed:
        print("\n".join(["", "deploy-check FAILED:", *failed]), file=sys.stderr)
        return 1
    print(f"deploy-check: clean in {took:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
