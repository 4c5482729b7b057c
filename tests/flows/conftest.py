"""The flow tests' fixtures (`prefect_harness`, `pipeline_home`, `TINY_TRAINING`) live in tests/conftest.py,
shared with tests/faults."""
