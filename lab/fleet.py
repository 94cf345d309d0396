"""The lab's local fleet: Prefect server on PostgreSQL, a process work pool, N workers.

A test and benchmark harness for one machine (tests/test_fleet.py, bench/bench_fleet.py,
deployments/FLEET.md), run from a cxhealth checkout; not something a user deploys. It
drives Prefect's own CLI (``prefect server start``, ``prefect worker start``,
``prefect block register``, ``prefect deploy``) and talks to the server with Prefect's
own client (:func:`client`), whose retries of the server's transient answers are Prefect's.

    python -m cxhealth.lab.fleet up   [--workers 3] [--state-dir DIR] [--db-name cxhealth_fleet] [--fresh] ...
    python -m cxhealth.lab.fleet status [--state-dir DIR] [--json]
    python -m cxhealth.lab.fleet down [--state-dir DIR] [--drop-db]

``up`` does, in order (see deployments/FLEET.md):

1. creates the PostgreSQL database (``--fresh`` drops it first) — or uses SQLite
   under the state directory with ``--database sqlite`` (one API process only);
2. starts ``prefect server start`` on a free 127.0.0.1 port, with an isolated
   ``PREFECT_HOME`` under the state directory, and waits for ``/api/health``;
3. registers the block types (``prefect block register -m cxhealth.blocks``) and, at the
   same time, creates the work pool, the ``wfm-sync`` queue and the two
   Automations (``python deployments/automation.py``);
4. applies ``deployments/prefect.yaml`` (``prefect deploy --all``) from the
   repository root;
5. starts N ``prefect worker start --pool cxhealth-pool`` processes and waits
   until the server lists them online.

Every process runs in its own session with its log under ``<state>/logs/`` and
its pid in ``<state>/fleet.json``; each carries ``CXHEALTH_FLEET_ID`` in its
environment, which the flow-run processes the workers spawn (in sessions of
their own) inherit. ``down`` stops the workers, then the server (SIGTERM, then
SIGKILL after a grace period), then any process still carrying the fleet's id,
and checks that none is left. Nothing is left running; the database is kept
unless ``--drop-db`` (a second ``up`` on it starts faster).

Workers inherit the environment of ``up`` (minus ``PREFECT_*``): that is where
the secrets named by ``client_secret_env`` come from. No secret is written to
the state directory.

Exit status: 0 done; 1 a step failed (one line on stderr, the log's tail with
``--verbose``; what was started is stopped again); 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

REPO = Path(__file__).resolve().parent.parent
PREFECT_FILE = REPO / "deployments" / "prefect.yaml"
AUTOMATION_SCRIPT = REPO / "deployments" / "automation.py"
DEFAULT_STATE_DIR = Path(os.environ.get("CXHEALTH_FLEET_DIR", "~/.cxhealth/fleet")).expanduser()
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_DB = "cxhealth_fleet"
POOL = "cxhealth-pool"
WFM_QUEUE = "wfm-sync"
MARKER = "CXHEALTH_FLEET_ID"
STATE_FILE = "fleet.json"


class FleetError(RuntimeError):
    """A step of up/down failed; one line."""


@dataclass
class FleetOptions:
    """What ``up`` builds. Defaults are the documented local fleet."""

    state_dir: Path = DEFAULT_STATE_DIR
    workers: int = 3
    database: str = "postgres"          # postgres | sqlite
    pg_url: str = DEFAULT_PG            # server (no database) URL, trust auth
    db_name: str = DEFAULT_DB
    fresh: bool = False                 # drop and recreate the database first
    port: int = 0                       # 0: a free port
    pool: str = POOL
    worker_poll_s: float = 5.0          # PREFECT_WORKER_QUERY_SECONDS (Prefect's default is 10)
    scheduler: bool = True              # False: the server creates no scheduled runs (tests)
    ui: bool = True
    deploy: bool = True
    worker_env: Mapping[str, str] = field(default_factory=dict)  # extra env for the workers only
    startup_timeout_s: float = 120.0
    # None: the server's in-memory messaging (Prefect's default: each consumer's queue holds
    # 10,000 events and drops the rest, which a 1,000-target burst overflows, FLEET.md);
    # a redis:// URL: prefect-redis streams (Prefect's documented path for high event load).
    messaging: str | None = None


@dataclass
class Proc:
    role: str       # server | worker
    name: str
    pid: int
    log: str


@dataclass
class FleetState:
    """What ``up`` started (``<state>/fleet.json``)."""

    id: str
    state_dir: str
    api_url: str
    ui_url: str
    database: str
    database_url: str               # no password: trust auth (or a SQLite path)
    db_name: str | None
    pool: str
    processes: list[Proc] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def workers(self) -> list[Proc]:
        return [p for p in self.processes if p.role == "worker"]

    def save(self) -> None:
        path = Path(self.state_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, state_dir: Path) -> "FleetState | None":
        path = Path(state_dir).expanduser() / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        data["processes"] = [Proc(**p) for p in data.get("processes", [])]
        return cls(**data)


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------

def _prefect_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "prefect"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "prefect"]


def _base_env(state: FleetState, home: Path) -> dict[str, str]:
    """The caller's environment without PREFECT_* (isolation), plus the fleet's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": state.api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        MARKER: state.id,
    })
    return env


def _spawn(cmd: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(list(cmd), cwd=REPO, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _run_step(cmd: Sequence[str], env: Mapping[str, str], log: Path, *, timeout: float = 180.0,
              attempts: int = 1) -> None:
    """Run a setup command to completion; its output goes to *log*."""
    for attempt in range(1, attempts + 1):
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            out.write(f"$ {' '.join(cmd)}  (attempt {attempt})\n".encode())
            out.flush()
            done = subprocess.run(list(cmd), cwd=REPO, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        if done.returncode == 0:
            return
    raise FleetError(f"`{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}` exited "
                     f"{done.returncode} (see {log})")


def _state_of(pid: int) -> str | None:
    """The process state letter from /proc (None: no such process). Reaps our own zombies."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text.rsplit(")", 1)[1].split()[0]


def is_running(pid: int) -> bool:
    state = _state_of(pid)
    return state is not None and state not in ("Z", "X")


def marked_pids(fleet_id: str) -> list[int]:
    """Live processes whose environment carries this fleet's id (workers' flow runs too)."""
    needle = f"{MARKER}={fleet_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and is_running(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # each process leads its own session/group
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _stop(pids: Sequence[int], grace_s: float) -> list[int]:
    """SIGTERM the groups, wait up to *grace_s*, then SIGKILL; returns those that needed SIGKILL."""
    live = [p for p in pids if is_running(p)]
    for pid in live:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(is_running(p) for p in live):
        time.sleep(0.05)
    killed = [p for p in live if is_running(p)]
    for pid in killed:
        _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(is_running(p) for p in killed):
        time.sleep(0.05)
    return killed


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

def _pg_run(pg_url: str, statements: Sequence[str]) -> None:
    import asyncpg  # a Prefect server dependency

    async def go() -> None:
        conn = await asyncpg.connect(f"{pg_url.rstrip('/')}/postgres", timeout=10)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def _pg_exists(pg_url: str, db_name: str) -> bool:
    import asyncpg

    async def go() -> bool:
        conn = await asyncpg.connect(f"{pg_url.rstrip('/')}/postgres", timeout=10)
        try:
            return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db_name))
        finally:
            await conn.close()

    return asyncio.run(go())


def _check_db_name(name: str) -> None:
    if not name.replace("_", "").isalnum() or not name[0].isalpha() or len(name) > 63:
        raise ValueError(f"database name {name!r}: letters, digits and '_' only, starting with a letter")


def ensure_database(pg_url: str, db_name: str, *, fresh: bool = False) -> bool:
    """Create the database if missing (``fresh``: drop it first). True when created."""
    _check_db_name(db_name)
    if fresh:
        drop_database(pg_url, db_name)
    if _pg_exists(pg_url, db_name):
        return False
    _pg_run(pg_url, [f'CREATE DATABASE "{db_name}"'])
    return True


def drop_database(pg_url: str, db_name: str) -> None:
    _check_db_name(db_name)
    _pg_run(pg_url, [
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db_name}' "
        f"AND pid <> pg_backend_pid()",
        f'DROP DATABASE IF EXISTS "{db_name}"',
    ])


# ---------------------------------------------------------------------------
# the Prefect API: Prefect's own client (it retries the server's 408/429/502/503,
# Retry-After honoured, PREFECT_CLIENT_MAX_RETRIES times), pointed at this fleet
# ---------------------------------------------------------------------------

def client(api_url: str, timeout: float = 30.0) -> Any:
    """Prefect's synchronous API client for the fleet at *api_url* (use it as a context manager).

    The URL is passed explicitly, so the caller's own Prefect profile (or the test
    harness' settings) is never consulted for where the fleet is.
    """
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(api_url, httpx_settings={"timeout": timeout})


def healthy(api: Any) -> bool:
    """True when the server answers its health check."""
    return api.api_healthcheck() is None


def online_workers(api: Any, pool: str) -> set[str]:
    return {w.name for w in api.read_workers_for_work_pool(pool) if str(getattr(w.status, "value", w.status))
            == "ONLINE"}


def flow_runs(api: Any, ids: Sequence[Any]) -> list[Any]:
    """The flow runs with these ids (one filter request)."""
    if not ids:
        return []
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return api.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))), limit=200)


def task_runs(api: Any, flow_run_ids: Sequence[Any]) -> list[Any]:
    """Every task run of these flow runs (paged)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    out: list[Any] = []
    ids = list(flow_run_ids)
    for i in range(0, len(ids), 50):
        offset = 0
        while True:
            page = api.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids[i:i + 50])),
                                      limit=200, offset=offset)
            out += page
            if len(page) < 200:
                break
            offset += 200
    return out


def events(api: Any, names: Sequence[str], *, resource_prefix: str | None = None) -> list[Any]:
    """Events by name (every page, the last day), oldest first."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventOrder, EventResourceFilter

    flt = EventFilter(event=EventNameFilter(name=list(names)), order=EventOrder.ASC,
                      resource=EventResourceFilter(id_prefix=[resource_prefix]) if resource_prefix else None)
    page = api.read_events(flt, limit=50)
    found = list(page.events)
    while page.next_page:
        page = api.read_events_page(page.next_page)
        found += page.events
    return found


def twin_deployment(api: Any, base: Any, name: str, **changes: Any) -> Any:
    """A copy of deployment *base* (same flow, entrypoint, pull steps, pool) under *name*; returns its id."""
    values = dict(flow_id=base.flow_id, name=name, entrypoint=base.entrypoint, path=base.path,
                  pull_steps=base.pull_steps, work_pool_name=base.work_pool_name,
                  work_queue_name=base.work_queue_name, parameter_openapi_schema=base.parameter_openapi_schema,
                  enforce_parameter_schema=base.enforce_parameter_schema, job_variables=base.job_variables,
                  tags=base.tags)
    return api.create_deployment(**{**values, **changes})


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.2,
             what: str = "condition") -> Any:
    """Poll *predicate* until it returns a truthy value or *timeout* passes (then FleetError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise FleetError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# up / down / status
# ---------------------------------------------------------------------------

def _answers(api: Any) -> bool:
    """The health check during startup and in status: a refused connection is "not yet", not an error."""
    try:
        return healthy(api)
    except Exception:  # noqa: BLE001 - not up (yet)
        return False


def _log_tail(path: str | Path, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def redis_messaging_env(url: str) -> dict[str, str]:
    """The server settings that move its events and their consumers onto Redis streams (prefect-redis)."""
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError(f"--messaging {url!r}: expected a redis:// URL")
    try:
        import prefect_redis  # noqa: F401
    except ImportError:
        raise FleetError("--messaging needs prefect-redis (pip install -e '.[fleet]')") from None
    return {"PREFECT_MESSAGING_BROKER": "prefect_redis.messaging", "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
            "PREFECT_REDIS_MESSAGING_URL": url}


def up(options: FleetOptions | None = None, *, echo: Callable[[str], None] = lambda s: None) -> FleetState:
    """Bring the fleet up; on any failure, stop what was started and raise FleetError."""
    o = options or FleetOptions()
    if o.workers < 1:
        raise ValueError("--workers must be at least 1")
    if o.messaging:
        redis_messaging_env(o.messaging)  # a bad URL or a missing prefect-redis: before anything starts
    if o.database not in ("postgres", "sqlite"):
        raise ValueError("--database must be postgres or sqlite")
    if not PREFECT_FILE.is_file():
        raise FleetError(f"{PREFECT_FILE} not found: the fleet harness runs from a cxhealth checkout")
    state_dir = Path(o.state_dir).expanduser().resolve()
    existing = FleetState.load(state_dir)
    if existing is not None and any(is_running(p.pid) for p in existing.processes):
        raise FleetError(f"a fleet is already running from {state_dir} (API {existing.api_url}); "
                         f"run `python -m cxhealth.lab.fleet down --state-dir {state_dir}` first")
    state_dir.mkdir(parents=True, exist_ok=True)
    home, logs = state_dir / "prefect-home", state_dir / "logs"
    home.mkdir(exist_ok=True)
    logs.mkdir(exist_ok=True)
    t0 = time.monotonic()
    port = o.port or free_port()
    if o.database == "postgres":
        db_url = f"postgresql+asyncpg://{o.pg_url.split('://', 1)[1].rstrip('/')}/{o.db_name}"
    else:
        db_url = f"sqlite+aiosqlite:///{state_dir / 'prefect.db'}"
    state = FleetState(id=secrets.token_hex(8), state_dir=str(state_dir), api_url=f"http://127.0.0.1:{port}/api",
                       ui_url=f"http://127.0.0.1:{port}", database=o.database, database_url=db_url,
                       db_name=o.db_name if o.database == "postgres" else None, pool=o.pool)
    state.save()
    try:
        if o.database == "postgres":
            created = ensure_database(o.pg_url, o.db_name, fresh=o.fresh)
            echo(f"database {o.db_name}: {'created' if created else 'exists'}")
        env = _base_env(state, home)
        server_env = {**env, "PREFECT_API_DATABASE_CONNECTION_URL": db_url,
                      "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "true" if o.scheduler else "false",
                      "PREFECT_UI_ENABLED": "true" if o.ui else "false",
                      "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port)}
        if o.messaging:
            server_env.update(redis_messaging_env(o.messaging))
        server_log = logs / "server.log"
        server = _spawn([*_prefect_cmd(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                        server_env, server_log)
        state.processes.append(Proc("server", "server", server.pid, str(server_log)))
        state.save()
        with client(state.api_url, timeout=5) as api:
            deadline = time.monotonic() + o.startup_timeout_s
            while not _answers(api):
                if not is_running(server.pid):
                    raise FleetError(f"the Prefect server exited during startup:\n{_log_tail(server_log)}")
                if time.monotonic() > deadline:
                    raise FleetError(f"the Prefect server did not answer within {o.startup_timeout_s:.0f}s")
                time.sleep(0.1)
            state.timings["server_s"] = round(time.monotonic() - t0, 1)
            echo(f"server up at {state.ui_url} ({state.timings['server_s']}s)")

            # The Automations script creates the pool and the wfm-sync queue; the workers can
            # start as soon as the pool exists, while the block types register and prefect.yaml
            # deploys (all of them only need the server).
            with ThreadPoolExecutor(2) as pool:
                blocks = pool.submit(_run_step, [*_prefect_cmd(), "block", "register", "-m", "cxhealth.blocks"], env,
                                     logs / "blocks.log", attempts=2)
                _run_step([sys.executable, str(AUTOMATION_SCRIPT), "--pool", o.pool, "--queue", WFM_QUEUE], env,
                          logs / "automation.log")
                echo(f"work pool {o.pool}, its {WFM_QUEUE} queue and the pause/resume Automations created")
                names = [f"cxhealth-fleet-{i + 1}" for i in range(o.workers)]
                for name in names:
                    start_worker(state, name, o.pool, o.worker_env, o.worker_poll_s)
                if o.deploy:
                    _run_step([*_prefect_cmd(), "--no-prompt", "deploy", "--all", "--prefect-file",
                               str(PREFECT_FILE)], env, logs / "deploy.log")
                    echo(f"deployments applied from {PREFECT_FILE.relative_to(REPO)}")
                blocks.result()
                echo("block types registered (prefect block register -m cxhealth.blocks)")
            state.timings["setup_s"] = round(time.monotonic() - t0, 1)

            def online() -> bool:
                for p in state.workers:
                    if not is_running(p.pid):
                        raise FleetError(f"worker {p.name} exited during startup:\n{_log_tail(p.log)}")
                return set(names) <= online_workers(api, o.pool)

            wait_for(online, o.startup_timeout_s, 0.2, f"{o.workers} workers online")
            state.timings["up_s"] = round(time.monotonic() - t0, 1)
            echo(f"{o.workers} worker(s) online in pool {o.pool} ({state.timings['up_s']}s in all)")
        state.save()
        return state
    except BaseException:
        down(state_dir, quiet=True)
        raise


def start_worker(state: FleetState, name: str, pool: str, extra_env: Mapping[str, str] | None = None,
                 poll_s: float = 5.0) -> Proc:
    """Start one ``prefect worker start`` of this fleet (recorded in fleet.json, so ``down`` stops it)."""
    home = Path(state.state_dir) / "prefect-home"
    env = {**_base_env(state, home), **dict(extra_env or {}), "PREFECT_WORKER_QUERY_SECONDS": f"{poll_s:g}",
           "PREFECT_WORKER_PREFETCH_SECONDS": f"{max(poll_s, 1):g}"}
    log = Path(state.state_dir) / "logs" / f"{name}.log"
    proc = _spawn([*_prefect_cmd(), "worker", "start", "--pool", pool, "--type", "process", "--name", name],
                  env, log)
    record = Proc("worker", name, proc.pid, str(log))
    state.processes.append(record)
    state.save()
    return record


def prefect_env(state: FleetState) -> dict[str, str]:
    """The environment a ``prefect`` command needs to talk to this fleet (isolated PREFECT_HOME)."""
    return _base_env(state, Path(state.state_dir) / "prefect-home")


def run_prefect(state: FleetState, *args: str, log_name: str = "commands.log") -> None:
    """Run one ``prefect ...`` command against this fleet (output in <state>/logs/*log_name*)."""
    _run_step([*_prefect_cmd(), *args], prefect_env(state), Path(state.state_dir) / "logs" / log_name)


@dataclass
class DownReport:
    stopped: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)      # needed SIGKILL
    stragglers: list[int] = field(default_factory=list)  # marked processes found and killed
    left: list[int] = field(default_factory=list)        # still alive (should be empty)
    dropped_db: str | None = None


def down(state_dir: Path | str = DEFAULT_STATE_DIR, *, drop_db: bool = False, pg_url: str = DEFAULT_PG,
         grace_s: float = 10.0, quiet: bool = False) -> DownReport:
    """Stop every process of the fleet in *state_dir*; verify that none is left."""
    state_dir = Path(state_dir).expanduser().resolve()
    report = DownReport()
    state = FleetState.load(state_dir)
    if state is None:
        return report
    # Workers first (they would otherwise spin on a dead API), then the server.
    for role in ("worker", "server"):
        procs = [p for p in state.processes if p.role == role]
        killed = set(_stop([p.pid for p in procs], grace_s))
        for p in procs:
            (report.killed if p.pid in killed else report.stopped).append(f"{p.role} {p.name} (pid {p.pid})")
    report.stragglers = marked_pids(state.id)  # e.g. flow runs in sessions of their own
    if report.stragglers:
        _stop(report.stragglers, 2.0)
    report.left = [p.pid for p in state.processes if is_running(p.pid)] + marked_pids(state.id)
    if drop_db and state.database == "postgres" and state.db_name:
        drop_database(pg_url, state.db_name)
        report.dropped_db = state.db_name
    if not report.left:
        (state_dir / STATE_FILE).unlink(missing_ok=True)
    return report


def status(state_dir: Path | str = DEFAULT_STATE_DIR) -> dict[str, Any]:
    """What is running, and what the server says about the pool, queues, deployments, Automations."""
    state = FleetState.load(Path(state_dir).expanduser().resolve())
    if state is None:
        return {"up": False, "state_dir": str(Path(state_dir).expanduser())}
    out: dict[str, Any] = {
        "up": True, "id": state.id, "api_url": state.api_url, "ui_url": state.ui_url,
        "database": state.database_url, "state_dir": state.state_dir,
        "processes": [{"role": p.role, "name": p.name, "pid": p.pid, "running": is_running(p.pid), "log": p.log}
                      for p in state.processes],
        "flow_run_processes": len([p for p in marked_pids(state.id) if p not in {q.pid for q in state.processes}]),
    }
    with client(state.api_url, timeout=5) as api:
        out["api_healthy"] = _answers(api)
        if out["api_healthy"]:
            out["workers"] = [{"name": w.name, "status": str(getattr(w.status, "value", w.status)),
                               "last_heartbeat": str(w.last_heartbeat_time)}
                              for w in api.read_workers_for_work_pool(state.pool)]
            out["queues"] = [{"name": q.name, "paused": q.is_paused, "status": str(getattr(q.status, "value", q.status))}
                             for q in api.read_work_queues(work_pool_name=state.pool)]
            out["deployments"] = sorted(f"{d.name} (paused)" if d.paused else d.name for d in api.read_deployments())
            out["automations"] = sorted(a.name for a in api.read_automations())
    out["up"] = any(p["running"] for p in out["processes"])
    return out


def _print_status(s: Mapping[str, Any]) -> None:
    if not s.get("processes"):
        print(f"no fleet in {s['state_dir']}")
        return
    print(f"fleet {s['id']}  API {s['api_url']}  ({'healthy' if s.get('api_healthy') else 'NOT answering'})")
    print(f"  database {s['database']}")
    for p in s["processes"]:
        print(f"  {p['role']:<7} {p['name']:<18} pid {p['pid']:<7} {'running' if p['running'] else 'STOPPED'}")
    if s.get("flow_run_processes"):
        print(f"  flow-run processes: {s['flow_run_processes']}")
    for w in s.get("workers", []):
        print(f"  worker  {w['name']}: {w['status']}")
    for q in s.get("queues", []):
        print(f"  queue   {q['name']}: {'PAUSED' if q['paused'] else 'ready'}")
    for d in s.get("deployments", []):
        print(f"  deployment {d}")
    for a in s.get("automations", []):
        print(f"  automation {a}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxhealth.lab.fleet", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start server, workers; register blocks; deploy; create the Automations")
    p_down = sub.add_parser("down", help="stop everything the fleet started")
    p_status = sub.add_parser("status", help="what is running")
    for p in (p_up, p_down, p_status):
        p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                       help=f"state, logs and pids (default {DEFAULT_STATE_DIR}; env CXHEALTH_FLEET_DIR)")
    for p in (p_up, p_down):
        p.add_argument("--pg-url", default=DEFAULT_PG, help=f"PostgreSQL server URL (default {DEFAULT_PG})")
    p_up.add_argument("--workers", type=int, default=3)
    p_up.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    p_up.add_argument("--db-name", default=DEFAULT_DB)
    p_up.add_argument("--fresh", action="store_true", help="drop and recreate the database first")
    p_up.add_argument("--port", type=int, default=0, help="API/UI port (default: a free one)")
    p_up.add_argument("--poll", type=float, default=5.0, help="worker poll interval, seconds (default 5)")
    p_up.add_argument("--no-scheduler", dest="scheduler", action="store_false",
                      help="the server creates no scheduled runs (manual runs only)")
    p_up.add_argument("--no-ui", dest="ui", action="store_false")
    p_up.add_argument("--messaging", metavar="REDIS_URL",
                      help="the server's event messaging on Redis streams (prefect-redis) instead of in memory")
    p_up.add_argument("--verbose", action="store_true")
    p_down.add_argument("--drop-db", action="store_true", help="also drop the PostgreSQL database")
    p_status.add_argument("--json", action="store_true")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    try:
        if args.command == "up":
            opts = FleetOptions(state_dir=args.state_dir, workers=args.workers, database=args.database,
                                pg_url=args.pg_url, db_name=args.db_name, fresh=args.fresh, port=args.port,
                                worker_poll_s=args.poll, scheduler=args.scheduler, ui=args.ui,
                                messaging=args.messaging)
            state = up(opts, echo=print)
            print(f"\nUI  {state.ui_url}\nexport PREFECT_API_URL={state.api_url}\n"
                  f"state and logs: {state.state_dir}\ndown: python -m cxhealth.lab.fleet down"
                  + (f" --state-dir {state.state_dir}" if Path(state.state_dir) != DEFAULT_STATE_DIR.resolve() else ""))
        elif args.command == "down":
            report = down(args.state_dir, drop_db=args.drop_db, pg_url=args.pg_url)
            for line in report.stopped:
                print(f"stopped {line}")
            for line in report.killed:
                print(f"killed  {line} (did not stop within the grace period)")
            if report.stragglers:
                print(f"killed  {len(report.stragglers)} leftover flow-run process(es)")
            if report.dropped_db:
                print(f"dropped database {report.dropped_db}")
            if report.left:
                print(f"error: still running: {report.left}", file=sys.stderr)
                return 1
            if not (report.stopped or report.killed):
                print("nothing was running")
        else:
            s = status(args.state_dir)
            if args.json:
                print(json.dumps(s, indent=2))
            else:
                _print_status(s)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FleetError as exc:
        text = str(exc)
        print(f"error: {text if getattr(args, 'verbose', False) else text.splitlines()[0]}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - e.g. PostgreSQL unreachable: one line
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
