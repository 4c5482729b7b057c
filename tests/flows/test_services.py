"""The services stack (issue 12) for real: PostgreSQL 15 started with pg_ctl, an MLflow tracking server on it
with proxied artifacts, a Prefect server on it, the ledger in it; a tiny pair trained and promoted through
the real ingest and retrain flows against those URIs; 10,000 applicants answered in this process and on a
real Dask LocalCluster of two worker processes and on a standing `dask scheduler` + `dask worker` pair reached
by address, with identical answers; `down` leaves no process.

The stack is started once for the module on free loopback ports under a temporary GENRE_HOME.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from flows import procs, services
from genre.core.datasets import get_spec, load_split

pytestmark = pytest.mark.slow

SPEC = get_spec("compas")
GATES = {"auc_margin": 0.05, "auc_floor": 0.6, "validity_floor": 0.5, "validity_h_floor": 0.5, "plausibility_floor": 0.3}
N_APPLICANTS = 10_000

if not (services.PG_BIN / "pg_ctl").exists():
    pytest.skip(f"PostgreSQL 15 cannot be found at {services.PG_BIN} (apt-get install postgresql-15)",
                allow_module_level=True)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def stack(pipeline_home, prefect_harness):
    """The stack up, with this process pointed at it (MLflow, ledger; Prefect stays the test harness)."""
    # Not under pytest's own temp root: that is private to root (0700), and the postgres user must reach
    # its data directory.
    root = Path(tempfile.mkdtemp(prefix="genre-services-"))
    os.chmod(root, 0o755)
    pg, ml, pf, dk = _free_ports(4)
    st = services.Stack(root / "services", pg, ml, pf, dk)
    try:
        services.up(st, dask_workers=2)  # a standing scheduler + 2 workers, reached by address
        with pipeline_home(st.state, GATES):
            saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "GENRE_LEDGER_URL", "PGPASSFILE")}
            os.environ.update({k: st.env()[k] for k in saved})
            try:
                yield st
            finally:
                for k, v in saved.items():
                    os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    finally:
        services.down(st)
        shutil.rmtree(root, ignore_errors=True)


def _sql(st: services.Stack, db: str, query: str) -> list[tuple]:
    with psycopg.connect(host="127.0.0.1", port=st.pg_port, user=services.USER, dbname=db,
                         passfile=str(st.pgpass)) as conn:
        return conn.execute(query).fetchall()


def test_postgres_listens_on_loopback_only_with_a_private_password(stack):
    assert oct(stack.pgpass.stat().st_mode & 0o777) == "0o600"
    assert ("127.0.0.1",) in {(r[0],) for r in _sql(stack, "postgres", "SHOW listen_addresses")}
    assert {"mlflow", "prefect", "ledger"} <= {r[0] for r in _sql(stack, "postgres", "SELECT datname FROM pg_database")}
    with pytest.raises(psycopg.OperationalError, match="password"):  # no password file: refused
        psycopg.connect(host="127.0.0.1", port=stack.pg_port, user=services.USER, dbname="ledger",
                        passfile=os.devnull).close()
    # Prefect's server keeps its tables in PostgreSQL, not in SQLite under its home.
    assert ("flow_run",) in _sql(stack, "prefect", "SELECT table_name FROM information_schema.tables "
                                                   "WHERE table_name = 'flow_run'")
    assert not list(stack.prefect_home.glob("*.db"))


def test_every_service_listens_on_loopback_only(stack):
    import psutil

    pids = {int((stack.pgdata / "postmaster.pid").read_text().split()[0]), services._prefect_pid(stack)}
    for folder, name in ((stack.folder / "mlflow", "server"), (stack.dask_folder, "scheduler"),
                         (stack.dask_folder, "workers")):
        pids |= set(procs.group_members(os.getpgid(procs.read(folder, name)["pid"])))
    listening = [c for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert {c.laddr.port for c in listening} >= {stack.pg_port, stack.mlflow_port, stack.prefect_port, stack.dask_port}
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}, [(c.pid, c.laddr) for c in listening]


@pytest.fixture(scope="module")
def champion(stack):
    """compas ingested, a tiny pair trained, registered and promoted through the real flows on the stack."""
    from flows.ingest import ingest
    from flows.retrain import retrain
    from tasks.settings import PipelineSettings

    settings = PipelineSettings.from_env()
    assert settings.mlflow_uri.startswith("http://127.0.0.1:")
    incoming = settings.incoming(SPEC.name)
    incoming.mkdir(parents=True, exist_ok=True)
    load_split(SPEC, "train").to_csv(incoming / "batch-001.csv", index=False)
    assert [r["status"] for r in ingest(dataset=SPEC.name)] == ["ingested"]
    result = retrain(dataset=SPEC.name)
    assert result["promoted"], result["gates"]
    return result


def test_registry_and_artifacts_live_in_the_stack(stack, champion):
    versions = _sql(stack, "mlflow", "SELECT name, version FROM model_versions ORDER BY name, version")
    assert ("genre-classifier", int(champion["classifier_version"])) in versions
    assert ("genre-generator", int(champion["generator_version"])) in versions
    # Proxied artifacts: the client wrote through the server into its artifacts folder, not under GENRE_HOME.
    stored = list((stack.folder / "mlflow" / "artifacts").rglob("classifier.pt"))
    assert stored and not (stack.state / "mlartifacts").exists()
    locations = {r[0] for r in _sql(stack, "mlflow", "SELECT artifact_location FROM experiments")}
    assert any(loc.startswith("mlflow-artifacts:") for loc in locations), locations


@pytest.fixture(scope="module")
def applicants(tmp_path_factory) -> Path:
    rows = pd.concat([load_split(SPEC, "train"), load_split(SPEC, "test")], ignore_index=True)
    frame = rows.sample(n=N_APPLICANTS, replace=True, random_state=1)[list(SPEC.features)].reset_index(drop=True)
    frame.insert(0, "applicant_id", [f"a{i:05d}" for i in range(N_APPLICANTS)])
    path = tmp_path_factory.mktemp("applicants") / "applicants.parquet"
    frame.to_parquet(path, index=False)
    return path


def test_partitions_on_two_dask_workers_answer_exactly_as_one_process(stack, champion, applicants, tmp_path):
    from flows.issue_recourse import issue_recourse
    from tasks.ledger.db import Ledger

    one = issue_recourse(str(applicants), dataset=SPEC.name, out=str(tmp_path / "one.csv"))
    assert one["engine"] == "in-process" and one["partitions"] == 1
    many = issue_recourse(str(applicants), dataset=SPEC.name, out=str(tmp_path / "many.csv"), partition_rows=2_000,
                          cluster="local", workers=2)
    assert many["engine"] == "local" and many["workers"] == 2 and many["partitions"] == 5
    address = stack.env()["GENRE_DASK_CLUSTER"]
    standing = issue_recourse(str(applicants), dataset=SPEC.name, out=str(tmp_path / "standing.csv"),
                              partition_rows=3_000, cluster=address)
    assert standing["engine"] == address and standing["partitions"] == 4
    a, b = pd.read_csv(tmp_path / "one.csv", dtype=str), pd.read_csv(tmp_path / "many.csv", dtype=str)
    c = pd.read_csv(tmp_path / "standing.csv", dtype=str)
    pd.testing.assert_frame_equal(a.drop(columns="ledger_id"), c.drop(columns="ledger_id"))
    assert len(a) == N_APPLICANTS and 0 < one["issued"] <= one["rejected"] < N_APPLICANTS
    assert (a["status"] == "recourse_issued").sum() == one["issued"] == many["issued"]
    # Every column of every row the same, down to the last digit; only the ledger ids differ (two batches).
    pd.testing.assert_frame_equal(a.drop(columns="ledger_id"), b.drop(columns="ledger_id"))
    # The ledger (PostgreSQL) holds each batch whole, written in one transaction per partition.
    counts = dict(_sql(stack, "ledger", "SELECT batch_id, count(*) FROM recourse GROUP BY batch_id"))
    assert counts == {one["batch_id"]: one["issued"], many["batch_id"]: many["issued"],
                      standing["batch_id"]: standing["issued"]}
    entries = Ledger().entries(SPEC.name)
    assert set(entries["classifier_version"]) == {champion["classifier_version"]}
    ids = pd.to_numeric(b["ledger_id"].dropna()).astype(int)
    assert set(ids) == set(entries.loc[entries["batch_id"] == many["batch_id"], "id"])


def test_monitoring_rescores_the_ledger_in_partitions_on_the_cluster(stack, champion, applicants, tmp_path):
    from flows.monitor import monitor

    summary = monitor(version=champion["classifier_version"], cluster="local", workers=2, partition_rows=2_000)
    issued = sum(n for (n,) in _sql(stack, "ledger", "SELECT count(*) FROM recourse"))
    validity = summary["ledger_validity"][champion["classifier_version"]]
    # Judged by the classifier that issued them: every recorded recourse is still valid.
    assert validity["n"] == issued > 0 and validity["still_valid"] == 1.0


def test_a_missing_file_fails_at_once_and_records_nothing(stack, champion, tmp_path):
    from flows.issue_recourse import issue_recourse
    from tasks.retry import PermanentError

    before = _sql(stack, "ledger", "SELECT count(*) FROM recourse")
    with pytest.raises(PermanentError, match="applicants file not found: .*nowhere.csv"):
        issue_recourse(str(tmp_path / "nowhere.csv"), dataset=SPEC.name, cluster="local")
    assert _sql(stack, "ledger", "SELECT count(*) FROM recourse") == before


def test_the_serving_ledger_links_each_answer_to_its_recourse_on_postgres(stack, served_rows):
    """Issue 14's bulk write on PostgreSQL: ids read back after two executemany INSERTs, mixed statuses, two
    requests at once as a spool replay writes them; every answer points at its own applicant's recourse."""
    from tasks.ledger.db import Ledger
    from tasks.ledger.recorder import ServingLedger

    url = stack.env()["GENRE_LEDGER_URL"]
    ledger = ServingLedger(url)
    try:
        statuses = ["ok", "invalid_input", "ok", "already_favourable", "ok", "no_valid_recourse"] * 40
        ids = ledger._write(served_rows("pg-r1", statuses) + served_rows("pg-r2", statuses[::-1]))
        answers = ledger.answers().set_index("id").loc[ids]
        assert answers["request_id"].tolist() == ["pg-r1"] * 240 + ["pg-r2"] * 240
        assert answers["row"].tolist() == list(range(1, 241)) * 2
        entries = Ledger(url).entries().set_index("id")
        linked = answers.dropna(subset=["recourse_id"])
        assert len(linked) == 240  # 3 ok rows in every 6, 480 rows
        for _, row in linked.iterrows():
            entry = entries.loc[int(row["recourse_id"])]
            assert entry["applicant_id"] == row["applicant_id"]
            assert entry["factual"]["age"] + 10 == entry["recourse"]["age"]
    finally:
        ledger.dispose()


def test_down_leaves_no_process(stack, champion):
    recorded = [procs.read(stack.folder / "mlflow", "server")["pid"], services._prefect_pid(stack),
                procs.read(stack.dask_folder, "scheduler")["pid"], procs.read(stack.dask_folder, "workers")["pid"]]
    postmaster = int((stack.pgdata / "postmaster.pid").read_text().split()[0])
    lines = services.down(stack)
    assert any("PostgreSQL stopped" in line for line in lines), lines
    for pid in (*recorded, postmaster):
        assert not procs.alive(pid, None), (pid, lines)
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and str(stack.folder) in _cmdline(p)]
    assert not leftovers, [_cmdline(p) for p in leftovers]


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
