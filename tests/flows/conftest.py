"""Flow tests run against a temporary Prefect API: one `prefect_test_harness` for the whole session."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """Start Prefect's temporary server once (about 11 s) and keep it for every flow test."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield
