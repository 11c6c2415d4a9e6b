"""gRPC servicers: proto <-> core only."""

from .tokenizer import TokenizerServicer

__all__ = ["TokenizerServicer"]
