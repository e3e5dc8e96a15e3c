"""Subcommands beyond `db`: serve and jobs. Each registers itself on the `hustlexp` parser."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add `serve` and `jobs` once they exist (API and jobs issues)."""
