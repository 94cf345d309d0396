"""A local cxhealth fleet: Prefect server on PostgreSQL, a process work pool, N workers.

    python deployments/fleet.py up   [--workers 3] [--state-dir DIR] [--db-name cxhealth_fleet] [--fresh] ...
    python deployments/fleet.py status [--state-dir DIR] [--json]
    python deployments/fleet.py down [--state-dir DIR] [--drop-db]

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
# the Prefect API (plain HTTP: no Prefect import, no settings cached in-process)
# ---------------------------------------------------------------------------

# What Prefect's own client retries (prefect.client.base): the server answers 503
# when its database is busy (SQLite's "database is locked", a PostgreSQL pool
# timeout) and the request's transaction was rolled back, so a retry is safe.
TRANSIENT_STATUSES = frozenset({408, 429, 502, 503})


def _retrying_transport(max_attempts: int = 6, max_wait_s: float = 8.0) -> Any:
    """An httpx transport that retries the server's transient answers, as Prefect's client does."""
    import httpx
    from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_exponential_jitter

    def wait(state: Any) -> float:
        response = state.outcome.result()
        asked = response.headers.get("retry-after", "")
        backoff = wait_exponential_jitter(initial=0.5, max=max_wait_s)(state)
        return max(backoff, float(asked)) if asked.isdigit() else backoff

    class Transport(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            def once() -> httpx.Response:
                response = super(Transport, self).handle_request(request)
                if response.status_code in TRANSIENT_STATUSES:
                    response.read()  # frees the connection before the retry
                    response.close()
                return response

            retrying = Retrying(retry=retry_if_result(lambda r: r.status_code in TRANSIENT_STATUSES),
                                stop=stop_after_attempt(max_attempts), wait=wait,
                                retry_error_callback=lambda state: state.outcome.result())
            return retrying(once)

    return Transport()


class FleetAPI:
    """A thin REST client for the fleet's server (used by status, the tests, the bench).

    Like Prefect's own client, it retries the server's transient answers
    (408/429/502/503, up to *attempts* in all, Retry-After honoured).
    """

    def __init__(self, api_url: str, timeout: float = 10.0, attempts: int = 6) -> None:
        import httpx

        self.api_url = api_url.rstrip("/")
        self.http = httpx.Client(base_url=self.api_url, timeout=timeout, transport=_retrying_transport(attempts))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "FleetAPI":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ok(self, response: Any) -> Any:
        response.raise_for_status()
        return response.json() if response.content else None

    def healthy(self) -> bool:
        try:
            return self.http.get("/health", timeout=2).status_code == 200
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def workers(self, pool: str) -> list[dict]:
        return self._ok(self.http.post(f"/work_pools/{pool}/workers/filter", json={}))

    def queues(self, pool: str) -> list[dict]:
        return self._ok(self.http.post(f"/work_pools/{pool}/queues/filter", json={}))

    def queue(self, pool: str, name: str) -> dict:
        return self._ok(self.http.get(f"/work_pools/{pool}/queues/{name}"))

    def deployment(self, flow_name: str, deployment_name: str) -> dict:
        return self._ok(self.http.get(f"/deployments/name/{flow_name}/{deployment_name}"))

    def deployments(self) -> list[dict]:
        return self._ok(self.http.post("/deployments/filter", json={}))

    def automations(self) -> list[dict]:
        return self._ok(self.http.post("/automations/filter", json={}))

    def create_deployment(self, body: Mapping[str, Any]) -> dict:
        return self._ok(self.http.post("/deployments/", json=dict(body)))

    def run_deployment(self, deployment_id: str, parameters: Mapping[str, Any] | None = None,
                       **extra: Any) -> dict:
        body = {"parameters": dict(parameters or {}), **extra}
        return self._ok(self.http.post(f"/deployments/{deployment_id}/create_flow_run", json=body))

    def flow_run(self, flow_run_id: str) -> dict:
        return self._ok(self.http.get(f"/flow_runs/{flow_run_id}"))

    def flow_runs(self, ids: Sequence[str]) -> list[dict]:
        if not ids:
            return []
        return self._ok(self.http.post("/flow_runs/filter", json={"flow_runs": {"id": {"any_": list(ids)}},
                                                                 "limit": 200}))

    def task_runs(self, flow_run_ids: Sequence[str]) -> list[dict]:
        out: list[dict] = []
        ids = list(flow_run_ids)
        for i in range(0, len(ids), 50):
            offset = 0
            while True:
                page = self._ok(self.http.post("/task_runs/filter", json={
                    "flow_runs": {"id": {"any_": ids[i:i + 50]}}, "limit": 200, "offset": offset}))
                out += page
                if len(page) < 200:
                    break
                offset += 200
        return out

    def events(self, names: Sequence[str], *, resource_prefix: str | None = None,
               since: str | None = None) -> list[dict]:
        """Events by name (every page), oldest first."""
        flt: dict[str, Any] = {"event": {"name": list(names)}, "order": "ASC"}
        if resource_prefix:
            flt["resource"] = {"id_prefix": [resource_prefix]}
        if since:
            flt["occurred"] = {"since": since}
        page = self._ok(self.http.post("/events/filter", json={"filter": flt, "limit": 50}))
        events = list(page.get("events") or [])
        while page.get("next_page"):
            page = self._ok(self.http.get(page["next_page"]))
            events += page.get("events") or []
        return events


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

def _log_tail(path: str | Path, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def up(options: FleetOptions | None = None, *, echo: Callable[[str], None] = lambda s: None) -> FleetState:
    """Bring the fleet up; on any failure, stop what was started and raise FleetError."""
    o = options or FleetOptions()
    if o.workers < 1:
        raise ValueError("--workers must be at least 1")
    if o.database not in ("postgres", "sqlite"):
        raise ValueError("--database must be postgres or sqlite")
    state_dir = Path(o.state_dir).expanduser().resolve()
    existing = FleetState.load(state_dir)
    if existing is not None and any(is_running(p.pid) for p in existing.processes):
        raise FleetError(f"a fleet is already running from {state_dir} (API {existing.api_url}); "
                         f"run `python deployments/fleet.py down --state-dir {state_dir}` first")
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
        server_log = logs / "server.log"
        server = _spawn([*_prefect_cmd(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                        server_env, server_log)
        state.processes.append(Proc("server", "server", server.pid, str(server_log)))
        state.save()
        with FleetAPI(state.api_url) as api:
            deadline = time.monotonic() + o.startup_timeout_s
            while not api.healthy():
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
                seen = {w["name"] for w in api.workers(o.pool) if w.get("status") == "ONLINE"}
                return set(names) <= seen

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
    with FleetAPI(state.api_url, timeout=5) as api:
        out["api_healthy"] = api.healthy()
        if out["api_healthy"]:
            out["workers"] = [{"name": w["name"], "status": w.get("status"), "last_heartbeat": w.get("last_heartbeat_time")}
                              for w in api.workers(state.pool)]
            out["queues"] = [{"name": q["name"], "paused": q.get("is_paused"), "status": q.get("status")}
                             for q in api.queues(state.pool)]
            out["deployments"] = sorted(f"{d.get('name')} (paused)" if d.get("paused") else d.get("name")
                                        for d in api.deployments())
            out["automations"] = sorted(a["name"] for a in api.automations())
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
    parser = argparse.ArgumentParser(prog="python deployments/fleet.py", description=__doc__.split("\n\n")[0])
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
                                worker_poll_s=args.poll, scheduler=args.scheduler, ui=args.ui)
            state = up(opts, echo=print)
            print(f"\nUI  {state.ui_url}\nexport PREFECT_API_URL={state.api_url}\n"
                  f"state and logs: {state.state_dir}\ndown: python deployments/fleet.py down"
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
