"""Where partition tasks run (issue 12): in this process, or on Dask distributed through `prefect-dask`.

`cluster`:
- None / "" : in this process, one partition after another (the embedded default);
- "local"   : a `distributed.LocalCluster` of `workers` worker processes (one thread each) and its scheduler,
              started for the run and closed after it;
- "tcp://host:8786": the scheduler of a running cluster (`dask scheduler` / `dask worker` on other machines).
The default is `GENRE_DASK_CLUSTER` (and `GENRE_DASK_WORKERS`, default 2).
"""
from __future__ import annotations

import contextlib
import os
import time

from prefect import flow, get_run_logger
from prefect.futures import as_completed

CLUSTER = "GENRE_DASK_CLUSTER"
WORKERS = "GENRE_DASK_WORKERS"


def default_cluster(cluster: str | None) -> str | None:
    return cluster if cluster is not None else (os.environ.get(CLUSTER) or None)


def default_workers(workers: int | None) -> int:
    return int(workers if workers is not None else os.environ.get(WORKERS, 2))


def task_runner(cluster: str, workers: int):
    from prefect_dask import DaskTaskRunner

    if cluster == "local":
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None, "silence_logs": 40})
    if not cluster.startswith(("tcp://", "tls://")):
        raise ValueError(f"cluster must be 'local' or a scheduler address tcp://host:port, got '{cluster}'")
    return DaskTaskRunner(address=cluster)


@contextlib.contextmanager
def _api_for_workers():
    """Dask workers report their task runs to the flow's Prefect API. Without PREFECT_API_URL, the flow's
    API is the temporary server this process started: hand its address to the workers, or each worker
    would start a server of its own."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    url = SubprocessASGIServer().api_url
    os.environ[PREFECT_API_URL.name] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
    finally:
        os.environ.pop(PREFECT_API_URL.name, None)


def map_partitions(task, items: list[tuple], cluster: str | None, workers: int, label: str) -> list:
    """`task(*item)` for every item, in order; in this process or on the cluster. Every partition finishes
    (or fails) before this returns; the first failure is then raised."""
    log = get_run_logger()
    started = time.monotonic()
    if not cluster:
        out = []
        for i, item in enumerate(items):
            out.append(task(*item))
            log.info("%s: partition %d/%d done (%.0f s)", label, i + 1, len(items), time.monotonic() - started)
        return out

    @flow(name=f"{label}-on-dask", task_runner=task_runner(cluster, workers), validate_parameters=False)
    def on_dask() -> list:
        futures = [task.submit(*item) for item in items]
        for done, _ in enumerate(as_completed(futures), start=1):
            get_run_logger().info("%s: %d/%d partitions done (%.0f s)", label, done, len(items),
                                  time.monotonic() - started)
        return [f.result() for f in futures]  # raises the first partition's error, if any failed

    with _api_for_workers():
        return on_dask()
