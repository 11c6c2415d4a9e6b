"""Writes deploy/k8s/schemas/keda.sh-v1alpha1-scaledobject.json: the JSON schema of KEDA's ScaledObject, which
`make deploy-check` validates components/autoscaling against (Kubernetes' own schemas do not know KEDA's kinds).

    python deploy/k8s/schemas/generate.py

The schema comes from PyPI's cloudcoil-models-keda (pydantic models generated from KEDA's CRDs, version in
CLOUDCOIL_KEDA below), installed into a throwaway venv: its model's JSON schema, with unknown fields refused at
every level (additionalProperties: false, as the API server's structural schema prunes or rejects them), so a
misspelt field fails the check instead of vanishing in the cluster.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
from pathlib import Path

CLOUDCOIL = "0.6.0"
CLOUDCOIL_KEDA = "2.16.1.0"  # KEDA 2.16's CRDs; the newest PyPI serves here
OUT = Path(__file__).resolve().parent / "keda.sh-v1alpha1-scaledobject.json"

DUMP = r"""
import json, sys
from cloudcoil.models.keda.v1alpha1 import ScaledObject

def strict(node):
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)

schema = ScaledObject.model_json_schema(by_alias=True)
strict(schema)
# metadata is Kubernetes' ObjectMeta (the Kubernetes schemas check it on every other kind): allow what it allows
schema["$defs"]["ObjectMeta"].pop("additionalProperties", None)
schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
schema["description"] = ("KEDA ScaledObject (keda.sh/v1alpha1), from PyPI cloudcoil-models-keda %s by "
                         "deploy/k8s/schemas/generate.py; unknown fields refused" % sys.argv[1])
json.dump(schema, sys.stdout, indent=1, sort_keys=True)
"""


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        venv.create(tmp, with_pip=True)
        py = str(Path(tmp) / "bin" / "python")
        subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"cloudcoil=={CLOUDCOIL}",
                        f"cloudcoil-models-keda=={CLOUDCOIL_KEDA}"], check=True)
        text = subprocess.run([py, "-c", DUMP, CLOUDCOIL_KEDA], check=True, capture_output=True, text=True).stdout
    OUT.write_text(text + "\n")
    print(f"wrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
