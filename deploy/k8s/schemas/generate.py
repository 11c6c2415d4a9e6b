"""Writes the JSON schemas of the custom resources tokenway's manifests use, which `make deploy-check` validates
them against (Kubernetes' own schemas do not know these kinds):
    deploy/k8s/schemas/keda.sh-v1alpha1-scaledobject.json          KEDA's ScaledObject (components/autoscaling)
    deploy/k8s/schemas/monitoring.coreos.com-v1-podmonitor.json    prometheus-operator's PodMonitor (components/monitoring)

    python deploy/k8s/schemas/generate.py

Each comes from a PyPI package of pydantic models generated from the project's CRDs (cloudcoil-models-*, versions
in MODELS below), installed into a throwaway venv: the model's JSON schema, with unknown fields refused at every
level (additionalProperties: false, as the API server's structural schema prunes or rejects them), so a misspelt
field fails the check instead of vanishing in the cluster.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
from pathlib import Path

CLOUDCOIL = "0.6.0"
HERE = Path(__file__).resolve().parent
# output file: (package==version, module, class); the newest versions PyPI serves here
MODELS = {
    "keda.sh-v1alpha1-scaledobject.json": ("cloudcoil-models-keda==2.16.1.0", "cloudcoil.models.keda.v1alpha1",
                                           "ScaledObject"),
    "monitoring.coreos.com-v1-podmonitor.json": ("cloudcoil-models-prometheus-operator==0.80.1.0",
                                                 "cloudcoil.models.prometheus_operator.v1", "PodMonitor"),
}

DUMP = r"""
import importlib, json, sys
package, module, name = sys.argv[1:4]
model = getattr(importlib.import_module(module), name)

def strict(node):
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)

schema = model.model_json_schema(by_alias=True)
strict(schema)
# metadata is Kubernetes' ObjectMeta (the Kubernetes schemas check it on every other kind): allow what it allows
schema["$defs"]["ObjectMeta"].pop("additionalProperties", None)
schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
schema["description"] = "%s, from PyPI %s by deploy/k8s/schemas/generate.py; unknown fields refused" % (name, package)
json.dump(schema, sys.stdout, indent=1, sort_keys=True)
"""


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        venv.create(tmp, with_pip=True)
        py = str(Path(tmp) / "bin" / "python")
        subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"cloudcoil=={CLOUDCOIL}",
                        *(package for package, _, _ in MODELS.values())], check=True)
        for out, (package, module, name) in MODELS.items():
            text = subprocess.run([py, "-c", DUMP, package, module, name], check=True, capture_output=True,
                                  text=True).stdout
            (HERE / out).write_text(text + "\n")
            print(f"wrote deploy/k8s/schemas/{out} ({name}, {package})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
