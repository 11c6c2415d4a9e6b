"""Engines run the model behind one interface (`base.Engine`); the servicer never knows which one."""

from __future__ import annotations

from .base import Engine


def create_engine(settings) -> Engine:
    """Builds the engine `settings.engine` names. vLLM is imported only when it is chosen."""
    if settings.engine == "vllm":
        from .vllm_engine import VllmEngine  # noqa: PLC0415 - the GPU profile only

        return VllmEngine.from_settings(settings)
    from .transformers_engine import TransformersEngine  # noqa: PLC0415

    return TransformersEngine.from_settings(settings)
