"""Fixtures shared by integration modules (the session's sandbox is in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka_helpers import Children


@pytest.fixture
def children() -> Iterator[Children]:
    """Start child processes with ``children.start(cmd, env)``; all are reaped at teardown."""
    kids = Children()
    try:
        yield kids
    finally:
        kids.reap()
