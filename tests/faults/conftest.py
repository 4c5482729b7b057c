"""Fixtures of the fault-injection suite; its helpers live in faultkit.py."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def api_url(prefect_harness) -> str:
    """The session's Prefect API, for flows run as real subprocesses."""
    return prefect_harness
