"""Engines run the model behind one interface (`base.Engine`); the servicer never knows which one."""

from __future__ import annotations

from .base import Engine


def create_engine(settings) -> Engine:
    """Builds the engine `settings.engine` names. Each is imported only when chosen (vLLM, torch are heavy)."""
    if settings.engine == "vllm":
        from .vllm_engine import VllmEngine  # noqa: PLC0415 - the GPU profile only

        return VllmEngine.from_settings(settings)
    if settings.engine == "synthetic":  # benchmarking only: no torch, no weights
        from .synthetic_engine import SyntheticEngine  # noqa: PLC0415

        return SyntheticEngine.from_settings(settings)
    from .transformers_engine import TransformersEngine  # noqa: PLC0415

    return TransformersEngine.from_settings(settings)
