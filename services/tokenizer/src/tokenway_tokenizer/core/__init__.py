"""The tokenizer's domain logic; imports no gRPC."""

from .stream import DetokenizeStream, StreamDelta, StreamOptions, StopMatcher
from .tokenizer import ROLES, ChatMessage, Encoded, RenderedChat, SpecialToken, Tokenizer, TokenizerInfo

__all__ = ["ROLES", "ChatMessage", "DetokenizeStream", "Encoded", "RenderedChat", "SpecialToken", "StopMatcher",
           "StreamDelta", "StreamOptions", "Tokenizer", "TokenizerInfo"]
