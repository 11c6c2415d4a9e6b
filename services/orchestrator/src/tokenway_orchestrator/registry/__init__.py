"""The model registry: the served models, their tokenizers and inference replicas (registry.py), as
configured by a models file or the address settings (spec.py)."""

from .registry import HEALTH_PREFIX, ModelEntry, Registry
from .registry import load as load_spec
from .spec import RegistrySpec, SpecError

__all__ = ["HEALTH_PREFIX", "ModelEntry", "Registry", "RegistrySpec", "SpecError", "load_spec"]
