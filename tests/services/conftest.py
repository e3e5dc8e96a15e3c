"""Service fixtures: the real services on this test's own database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hustlexp.db import Database
from hustlexp.services import Services


@pytest.fixture
def services(db: Database, tmp_path: Any) -> Iterator[Services]:
    yield Services(db, storage_dir=tmp_path / "uploads")
