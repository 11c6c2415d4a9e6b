"""Thin proto <-> engine translation."""
