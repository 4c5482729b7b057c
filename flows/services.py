"""The services stack (issue 12): PostgreSQL 15, an MLflow tracking server and a Prefect server on it, the
ledger in it, all on 127.0.0.1, state under `<GENRE_HOME>/services/`.

    python -m flows.services up [--dask-workers N]   # make up [DASK_WORKERS=N]
    python -m flows.services down   # make down: stops every process it started
    python -m flows.services env    # the lines to paste into a shell (also in services/env.sh)

Each service is started and stopped with its own tool where it has one: PostgreSQL with `pg_ctl` (as the
`postgres` user when run as root: `initdb` refuses root), the Prefect server with `prefect server start
--background` / `prefect server stop`; the MLflow server by pid file (`flows.procs`). The database password is
generated once into `services/postgres/pgpass` (mode 600, libpq's password file): no URI carries it, every
client finds it through `PGPASSFILE`. Ports: GENRE_PG_PORT (5432), GENRE_MLFLOW_PORT (5000), PREFECT_PORT (4200). The stack's folder is
GENRE_SERVICES when set (its env lines set it, so `make down` finds it from a pasted shell), else
`<GENRE_HOME>/services`.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from flows import procs
from tasks.home import root_home

REPO = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("GENRE_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "genre"
DATABASES = ("mlflow", "prefect", "ledger")


@dataclass(frozen=True)
class Stack:
    folder: Path
    pg_port: int = 5432
    mlflow_port: int = 5000
    prefect_port: int = 4200
    dask_port: int = 8786

    @classmethod
    def from_env(cls, folder: Path | None = None) -> "Stack":
        """GENRE_SERVICES (set by the stack's env lines), else `<GENRE_HOME>/services`."""
        folder = folder or os.environ.get("GENRE_SERVICES") or root_home() / "services"
        return cls(Path(folder).resolve(),
                   int(os.environ.get("GENRE_PG_PORT", 5432)), int(os.environ.get("GENRE_MLFLOW_PORT", 5000)),
                   int(os.environ.get("PREFECT_PORT", 4200)), int(os.environ.get("GENRE_DASK_PORT", 8786)))

    @property
    def pg_dir(self) -> Path:
        return self.folder / "postgres"

    @property
    def pgdata(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pgpass(self) -> Path:
        return self.pg_dir / "pgpass"

    @property
    def prefect_home(self) -> Path:
        return self.folder / "prefect"

    @property
    def state(self) -> Path:
        """GENRE_HOME of the flows run against the stack: incoming batches, the store, reports."""
        return self.folder / "state"

    def db_url(self, db: str, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://{USER}@127.0.0.1:{self.pg_port}/{db}"

    @property
    def dask_folder(self) -> Path:
        return self.folder / "dask"

    def env(self) -> dict[str, str]:
        """What a flow, `make serve`, `genre recourse` or the Prefect CLI needs to reach the stack."""
        dask = {"GENRE_DASK_CLUSTER": f"tcp://127.0.0.1:{self.dask_port}"} if procs.running(self.dask_folder,
                                                                                            "scheduler") else {}
        return dask | {
            "GENRE_SERVICES": str(self.folder),
            "GENRE_HOME": str(self.state),
            "PGPASSFILE": str(self.pgpass),
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{self.mlflow_port}",
            "GENRE_LEDGER_URL": self.db_url("ledger"),
            "PREFECT_API_URL": f"http://127.0.0.1:{self.prefect_port}/api",
            "PREFECT_HOME": str(self.prefect_home),
        }


# ---- PostgreSQL --------------------------------------------------------------------------------
def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` system user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def postgres_binaries() -> Path:
    if not (PG_BIN / "pg_ctl").exists():
        raise SystemExit(f"PostgreSQL 15 is not installed ({PG_BIN}/pg_ctl missing): `apt-get install postgresql-15`, "
                         f"or set GENRE_PG_BIN to its bin folder")
    return PG_BIN


def _init_postgres(stack: Stack) -> None:
    """initdb once: superuser `genre` with a generated password (scram), listening on 127.0.0.1 only."""
    bin_dir = postgres_binaries()
    stack.pg_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    pwfile = stack.pg_dir / ".initdb-password"
    pwfile.write_text(password + "\n")
    os.chmod(pwfile, 0o600)
    stack.pgdata.mkdir(mode=0o700)
    (stack.pg_dir / "run").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        for folder in (stack.pgdata, stack.pg_dir / "run"):
            shutil.chown(folder, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    try:
        subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(stack.pgdata), "-U", USER, "--pwfile", str(pwfile),
                                     "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C"]),
                       check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(stack.pgdata, ignore_errors=True)
        raise SystemExit(f"initdb failed: {exc.stderr[-2000:]}") from None
    finally:
        pwfile.unlink(missing_ok=True)
    conf = stack.pgdata / "postgresql.conf"
    with open(conf, "a") as fh:  # 127.0.0.1 only; the socket beside the data, not in /var/run
        fh.write(f"\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{stack.pg_dir / 'run'}'\n")
    tmp = stack.pg_dir / ".pgpass.tmp"
    tmp.write_text(f"127.0.0.1:*:*:{USER}:{password}\nlocalhost:*:*:{USER}:{password}\n")
    os.chmod(tmp, 0o600)  # libpq ignores a password file that others can read
    tmp.replace(stack.pgpass)


def pg_ctl(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_as_postgres([str(postgres_binaries() / "pg_ctl"), "-D", str(stack.pgdata), *args]),
                          capture_output=True, text=True)


def start_postgres(stack: Stack) -> str:
    if not (stack.pgdata / "PG_VERSION").exists():
        _init_postgres(stack)
    if pg_ctl(stack, "status").returncode == 0:
        return f"PostgreSQL already running on 127.0.0.1:{stack.pg_port}"
    log = stack.pg_dir / "postgres.log"
    log.touch()
    if os.geteuid() == 0:
        shutil.chown(log, "postgres", "postgres")
    done = pg_ctl(stack, "start", "-w", "-t", "120", "-l", str(log), "-o", f"-p {stack.pg_port}")
    if done.returncode != 0:
        raise SystemExit(f"pg_ctl start failed: {done.stdout[-1000:]}{done.stderr[-1000:]}\n{log.read_text()[-2000:]}")
    _create_databases(stack)
    return f"PostgreSQL 15 on 127.0.0.1:{stack.pg_port} (data {stack.pgdata})"


def _create_databases(stack: Stack) -> None:
    import psycopg

    os.environ["PGPASSFILE"] = str(stack.pgpass)
    with psycopg.connect(host="127.0.0.1", port=stack.pg_port, user=USER, dbname="postgres", autocommit=True) as conn:
        have = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        for db in DATABASES:
            if db not in have:
                conn.execute(f'CREATE DATABASE "{db}"')


def stop_postgres(stack: Stack) -> str | None:
    if not (stack.pgdata / "PG_VERSION").exists() or pg_ctl(stack, "status").returncode != 0:
        return None
    done = pg_ctl(stack, "stop", "-m", "fast", "-w", "-t", "60")
    return "PostgreSQL stopped (pg_ctl)" if done.returncode == 0 else f"pg_ctl stop FAILED: {done.stderr[-500:]}"


# ---- MLflow and Prefect servers ---------------------------------------------------------------
def wait_http(url: str, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{what} did not answer {url} within {timeout:.0f} s")


def base_env(stack: Stack) -> dict[str, str]:
    env = dict(os.environ) | stack.env()
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return env


def start_mlflow(stack: Stack) -> str:
    folder = stack.folder / "mlflow"
    if procs.running(folder, "server"):
        return "MLflow server already running"
    artifacts = folder / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    env = base_env(stack) | {"MLFLOW_BACKEND_STORE_URI": stack.db_url("mlflow")}
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", stack.db_url("mlflow"),
           "--artifacts-destination", artifacts.as_uri(), "--serve-artifacts", "--host", "127.0.0.1",
           "--port", str(stack.mlflow_port), "--workers", "1"]
    pid = procs.spawn(folder, "server", cmd, env, cwd=stack.folder)
    wait_http(f"http://127.0.0.1:{stack.mlflow_port}/health", "the MLflow server")
    return f"MLflow server (pid {pid}) at http://127.0.0.1:{stack.mlflow_port}, artifacts proxied to {artifacts}"


def prefect_cli(stack: Stack, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefect", *args], env=env or prefect_env(stack), cwd=REPO,
                          capture_output=True, text=True)


def prefect_env(stack: Stack) -> dict[str, str]:
    return base_env(stack) | {"PREFECT_API_DATABASE_CONNECTION_URL": stack.db_url("prefect", "asyncpg"),
                              "PREFECT_WORKER_QUERY_SECONDS": "2", "COLUMNS": "400"}


def prefect_server_pid(prefect_home: Path) -> int | None:
    """The pid `prefect server start --background` wrote under PREFECT_HOME, or None."""
    try:
        return int((Path(prefect_home) / "server.pid").read_text())
    except (OSError, ValueError):
        return None


def start_prefect_server(prefect_home: Path, port: int, env: dict, timeout: float = 180.0) -> int:
    """`prefect server start --background` on 127.0.0.1:port with `env` (its database URL decides SQLite or
    PostgreSQL); a stale pid file is removed first. Returns the server's pid once /api/health answers;
    RuntimeError with the command's output when it fails to start."""
    prefect_home = Path(prefect_home)
    prefect_home.mkdir(parents=True, exist_ok=True)
    (prefect_home / "server.pid").unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                           str(port), "--background"], env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"prefect server start failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
    wait_http(f"http://127.0.0.1:{port}/api/health", "the Prefect server", timeout=timeout)
    return prefect_server_pid(prefect_home)


def stop_prefect_server(prefect_home: Path, env: dict) -> tuple[int, bool] | None:
    """`prefect server stop`, then wait up to 30 s for the process (the command sends one SIGTERM and does not
    wait) and SIGKILL it if it is still there. (pid, whether SIGKILL was needed); None when none was recorded."""
    pid = prefect_server_pid(prefect_home)
    if pid is None:
        return None
    subprocess.run([sys.executable, "-m", "prefect", "server", "stop"], env=env, cwd=REPO, capture_output=True,
                   text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and procs.alive(pid, None):
        time.sleep(0.3)
    if procs.alive(pid, None):
        os.kill(pid, signal.SIGKILL)
        return pid, True
    return pid, False


def _prefect_pid(stack: Stack) -> int | None:
    return prefect_server_pid(stack.prefect_home)


def start_prefect(stack: Stack) -> str:
    pid = _prefect_pid(stack)
    if pid and procs.alive(pid, None):
        return f"Prefect server already running (pid {pid})"
    try:
        pid = start_prefect_server(stack.prefect_home, stack.prefect_port, prefect_env(stack))
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    return f"Prefect server (pid {pid}) at http://127.0.0.1:{stack.prefect_port} on PostgreSQL"


def stop_prefect(stack: Stack) -> str | None:
    stopped = stop_prefect_server(stack.prefect_home, prefect_env(stack))
    if stopped is None:
        return None
    pid, killed = stopped
    if killed:
        return f"Prefect server (pid {pid}) needed SIGKILL after `prefect server stop`"
    return f"Prefect server (pid {pid}) stopped (prefect server stop)"


def start_dask(stack: Stack, workers: int) -> str:
    """A standing Dask cluster: `dask scheduler` and `dask worker --nworkers N --nthreads 1` (pid files)."""
    if procs.running(stack.dask_folder, "scheduler"):
        return f"Dask scheduler already running at tcp://127.0.0.1:{stack.dask_port}"
    dask = str(Path(sys.executable).with_name("dask"))
    env = base_env(stack) | {"OMP_NUM_THREADS": "1"}
    address = f"tcp://127.0.0.1:{stack.dask_port}"
    # Every listening socket on loopback: the comms (--host) and the HTTP endpoints (health, metrics), which
    # would otherwise bind 0.0.0.0 even with the dashboard off.
    local = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
    procs.spawn(stack.dask_folder, "scheduler", [dask, "scheduler", "--host", "127.0.0.1", "--port", str(stack.dask_port),
                                                 *local], env, cwd=REPO)
    procs.spawn(stack.dask_folder, "workers", [dask, "worker", address, "--host", "127.0.0.1", "--nworkers", str(workers),
                                               "--nthreads", "1", *local,
                                               "--local-directory", str(stack.dask_folder / "work")], env, cwd=REPO)
    from distributed import Client

    with Client(address, timeout=120) as client:
        client.wait_for_workers(workers, timeout=180)
    return f"Dask scheduler at {address} with {workers} worker processes (1 thread each)"


# ---- the stack as a whole ---------------------------------------------------------------------
def write_env(stack: Stack) -> Path:
    path = stack.folder / "env.sh"
    path.write_text("".join(f"export {k}={v}\n" for k, v in stack.env().items()))
    return path


def up(stack: Stack, dask_workers: int = 0) -> list[str]:
    """Start what is not running; with `dask_workers`, a standing Dask cluster too (its address goes into the
    env lines as GENRE_DASK_CLUSTER; without it, each run starts a LocalCluster of its own)."""
    stack.folder.mkdir(parents=True, exist_ok=True)
    stack.state.mkdir(parents=True, exist_ok=True)
    lines = [start_postgres(stack), start_mlflow(stack), start_prefect(stack)]
    if dask_workers:
        lines.append(start_dask(stack, dask_workers))
    write_env(stack)
    return lines


def down(stack: Stack) -> list[str]:
    """Worker, Dask, Prefect, MLflow, then PostgreSQL; each line says what stopped."""
    lines = []
    for folder, name in ((stack.prefect_home, "worker"), (stack.dask_folder, "workers"), (stack.dask_folder, "scheduler")):
        line = procs.stop(folder, name, (signal.SIGINT, signal.SIGTERM))
        lines += [line] if line else []
    for line in (stop_prefect(stack), procs.stop(stack.folder / "mlflow", "server", (signal.SIGTERM,)),
                 stop_postgres(stack)):
        lines += [line] if line else []
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "env"])
    parser.add_argument("--dask-workers", type=int, default=int(os.environ.get("DASK_WORKERS") or 0),
                        help="also start a standing Dask scheduler and this many worker processes (default 0: "
                             "each run starts a LocalCluster)")
    args = parser.parse_args(argv)
    stack = Stack.from_env()
    if args.command == "up":
        for line in up(stack, args.dask_workers):
            print(line, flush=True)
        print(f"\nthe stack's variables are in {stack.folder / 'env.sh'}; `make deploy` deploys the flows to it")
    elif args.command == "down":
        print("\n".join(down(stack)) or "nothing was running")
    else:
        print(write_env(stack).read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
