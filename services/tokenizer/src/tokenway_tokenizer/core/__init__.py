"""The tokenizer's domain logic; imports no gRPC."""

from tokenway_text import DetokenizeStream, StopMatcher, StreamDelta, StreamOptions

from .bounded import Job
from .tokenizer import (ROLES, ChatMessage, Encoded, RenderedChat, SpecialToken, Tokenizer, TokenizerInfo, TokenizerSpec,
                        Vocabulary)

__all__ = ["ROLES", "ChatMessage", "DetokenizeStream", "Encoded", "Job", "RenderedChat", "SpecialToken", "StopMatcher",
           "StreamDelta", "StreamOptions", "Tokenizer", "TokenizerInfo", "TokenizerSpec", "Vocabulary"]
