"""The tokenizer's domain logic; imports no gRPC."""

from .bounded import Job
from .stream import DetokenizeStream, StreamDelta, StreamOptions, StopMatcher
from .tokenizer import ROLES, ChatMessage, Encoded, RenderedChat, SpecialToken, Tokenizer, TokenizerInfo, Vocabulary

__all__ = ["ROLES", "ChatMessage", "DetokenizeStream", "Encoded", "Job", "RenderedChat", "SpecialToken", "StopMatcher",
           "StreamDelta", "StreamOptions", "Tokenizer", "TokenizerInfo", "Vocabulary"]
