"""Startup failures of an engine (not request errors: those are tokenway_common.errors)."""


class EngineUnavailable(RuntimeError):
    """The chosen engine cannot run in this environment (e.g. vllm is not installed)."""
