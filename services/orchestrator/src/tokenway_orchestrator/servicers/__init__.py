"""Thin proto <-> domain servicers for tokenway.v1."""
