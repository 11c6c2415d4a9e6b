"""Streaming detokenization shared by the tokenizer service and the orchestrator (no gRPC)."""

from .detokenizer import MAX_STOP_CHARS, MAX_STOPS, Detokenizer, spec_digest
from .stream import DetokenizeStream, StopMatcher, StreamDelta, StreamOptions

__all__ = ["MAX_STOPS", "MAX_STOP_CHARS", "DetokenizeStream", "Detokenizer", "StopMatcher", "StreamDelta",
           "StreamOptions", "spec_digest"]
