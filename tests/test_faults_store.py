"""The breaker's store under faults: a Redis of the tests' own killed mid-run, SQLite on a
read-only and on a full filesystem, one corrupt record, a network filesystem.

Issue 14, contract §2: when the shared store cannot be reached or written, a LOCAL
SQLite store on the machine takes over (so this machine's processes still share one
breaker), every decision says so (``fallback``), and a store that can still be read
is obeyed (an OPEN record is not ignored). One unreadable record makes only its
host's breaker unknown; ``breaker clear`` always works.

The Redis here is a ``redis-server`` the test starts on a free port (no persistence)
and kills; the read-only and full filesystems are small tmpfs mounts (skipped with
the reason where the machine does not allow mounting).
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import time
import uuid

import pytest

from cxhealth.tasks.breaker import BreakerConfig, BreakerState, TransitionKind, open_breaker
from cxhealth.tasks.breaker.filesystem import filesystem_type, is_network_fs
from tests.conftest import services_required

HOST = "login.faults.test"
OTHER = "api.faults.test"
CAUSE = {"cause": "connection_reset", "summary": "the peer closed the connection"}
T0 = 1_700_000_000.0
CONFIG = BreakerConfig(threshold=2, window_s=60, open_s=30, max_open_s=300)


def _skip_or_fail(message: str) -> None:
    if services_required():
        pytest.fail(message + " and CXHEALTH_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


# ---------------------------------------------------------------- a Redis of our own


class OwnRedis:
    """A redis-server on a free 127.0.0.1 port, without persistence: kill() and start() again
    (a restart comes back empty, as a Redis without persistence does)."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def own_redis():
    redis = OwnRedis()
    if redis.binary is None:
        _skip_or_fail("redis-server is not installed")
    redis.start()
    yield redis
    redis.kill()


def test_redis_killed_mid_run_falls_back_to_one_local_store_shared_by_this_machine(own_redis) -> None:
    # Given two processes' breakers (two Breakers, each its own connections) on one Redis
    a = open_breaker(own_redis.url, CONFIG, timeout_s=0.3, retry_after_s=60)
    b = open_breaker(own_redis.url, CONFIG, timeout_s=0.3, retry_after_s=60)
    first = a.admit(HOST)
    assert first.admitted and first.fallback is None
    # When Redis dies mid-run
    own_redis.kill()
    # Then the failure is not lost to an in-process breaker: it goes to the machine's local store
    assert a.record_failure(HOST, CAUSE, decision=first) is None
    decision = b.admit(HOST)
    assert decision.admitted and decision.fallback and "local fallback store" in decision.fallback
    # and the other process's failure opens the breaker on the 2nd failure, not the 4th
    opened = b.record_failure(HOST, CAUSE, decision=decision)
    assert opened is not None and opened.kind is TransitionKind.OPENED and opened.fallback
    rejected = a.admit(HOST)
    assert not rejected.admitted and rejected.state is BreakerState.OPEN and rejected.fallback
    assert a.status(HOST).fallback and a.status(HOST).state is BreakerState.OPEN
    a.close()
    b.close()


def test_a_store_refusing_writes_falls_back_too(own_redis) -> None:
    import redis as redis_py

    client = redis_py.Redis.from_url(own_redis.url)
    client.config_set("min-replicas-to-write", 1)  # "NOREPLICAS": every write is refused
    try:
        breaker = open_breaker(own_redis.url, CONFIG, timeout_s=0.5)
        decision = breaker.admit(HOST)  # a CLOSED admit writes nothing and is still answered
        breaker.record_failure(HOST, CAUSE, decision=decision)
        second = breaker.admit(HOST)
        opened = breaker.record_failure(HOST, CAUSE, decision=second)
        assert opened is not None and opened.fallback and "local fallback store" in opened.fallback
        assert not breaker.admit(HOST).admitted
    finally:
        client.config_set("min-replicas-to-write", 0)
        client.close()


# ---------------------------------------------------------------- SQLite on a read-only / full filesystem


@pytest.fixture
def tmpfs(tmp_path):
    """An 8 MiB tmpfs mounted on a fresh folder (root only); unmounted after."""
    point = tmp_path / "mnt"
    point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        _skip_or_fail(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _open_on(path, clock):
    return open_breaker(f"sqlite:///{path}", CONFIG, clock=clock, busy_timeout_s=0.5)


def test_a_read_only_store_is_still_obeyed_for_an_open_record(tmpfs) -> None:
    now = [T0]
    db = tmpfs / "breaker.sqlite3"
    # Given the breaker opened in the store
    breaker = _open_on(db, lambda: now[0])
    for _ in range(2):
        breaker.record_failure(HOST, CAUSE, decision=breaker.admit(HOST))
    breaker.close()
    # When the filesystem becomes read-only
    assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)]).returncode == 0
    now[0] += 5
    breaker = _open_on(db, lambda: now[0])
    # Then the OPEN record is obeyed: no caller is let through inside the open time
    decisions = [breaker.admit(HOST) for _ in range(6)]
    assert not any(d.admitted for d in decisions)
    assert all(d.fallback and "local fallback store" in d.fallback for d in decisions)
    assert breaker.status(HOST).state is BreakerState.OPEN
    # and another host is still decided, by the local store, across this machine's breakers
    other = _open_on(db, lambda: now[0])
    other.record_failure(OTHER, CAUSE, decision=other.admit(OTHER))
    opened = breaker.record_failure(OTHER, CAUSE, decision=breaker.admit(OTHER))
    assert opened is not None and opened.kind is TransitionKind.OPENED
    # After the open time one probe goes (decided by the fallback, which never saw the incident)
    now[0] += CONFIG.open_s + 1
    assert breaker.admit(HOST).admitted


def test_a_full_disk_falls_back_at_once_and_still_obeys_what_it_can_read(tmpfs) -> None:
    now = [T0]
    db = tmpfs / "breaker.sqlite3"
    breaker = _open_on(db, lambda: now[0])
    for _ in range(2):
        breaker.record_failure(HOST, CAUSE, decision=breaker.admit(HOST))
    # When the disk fills up
    try:
        with open(tmpfs / "filler", "wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
    except OSError:
        pass
    start = time.monotonic()
    fresh = _open_on(db, lambda: now[0])
    decisions = [fresh.admit(OTHER) for _ in range(2)]
    for d in decisions:
        fresh.record_failure(OTHER, CAUSE, decision=d)
    # Then it does not cost a busy timeout per call, the new breaker opens on the local store,
    assert time.monotonic() - start < 5
    assert not fresh.admit(OTHER).admitted
    # and the OPEN record the full store still holds is obeyed
    assert not fresh.admit(HOST).admitted


# ---------------------------------------------------------------- one unreadable record


def test_one_corrupt_record_makes_only_its_host_unknown_and_clear_fixes_it(tmp_path) -> None:
    db = tmp_path / "breaker.sqlite3"
    breaker = _open_on(db, lambda: T0)
    breaker.record_failure(HOST, CAUSE, decision=breaker.admit(HOST))
    breaker.record_failure(OTHER, CAUSE, decision=breaker.admit(OTHER))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE breaker SET state = 'on-fire', failures = 'not json' WHERE host = ?", (HOST,))
    # The other host is untouched
    assert breaker.status(OTHER).failures_in_window == 1 and breaker.admit(OTHER).fallback is None
    # The corrupt one is unknown, with the reason, and still decided (by the fallback)
    status = breaker.status(HOST)
    assert status.state is BreakerState.UNKNOWN and "cannot be read" in status.fallback
    decision = breaker.admit(HOST)
    assert decision.admitted and "breaker clear" in decision.fallback
    # clear always works: the record is forgotten, the host is CLOSED again
    cleared = breaker.clear_override(HOST)
    assert cleared.state is BreakerState.CLOSED and cleared.fallback is None


def test_a_corrupt_redis_record_is_isolated_too(own_redis) -> None:
    import redis as redis_py

    prefix = f"cxhealth-test:{uuid.uuid4().hex[:8]}"
    breaker = open_breaker(own_redis.url, CONFIG, key_prefix=prefix)
    client = redis_py.Redis.from_url(own_redis.url)
    client.set(f"{prefix}:{{{HOST}}}", "garbage")  # a string where a hash belongs: WRONGTYPE
    client.hset(f"{prefix}:{{{OTHER}}}", mapping={"state": "closed", "failures": "x,y", "trips": "nan?"})
    for host in (HOST, OTHER):
        assert breaker.status(host).state is BreakerState.UNKNOWN
        assert breaker.admit(host).admitted and breaker.admit(host).fallback
        assert breaker.clear_override(host).state is BreakerState.CLOSED
    assert breaker.admit(HOST).fallback is None
    client.close()


def test_breaker_status_and_clear_commands_work_on_a_corrupt_record(tmp_path, capsys) -> None:
    from cxhealth.cli.main import main

    db = tmp_path / "breaker.sqlite3"
    targets = tmp_path / "targets.toml"
    targets.write_text(
        f'[[target]]\nname = "t"\nplatform = "generic"\ntoken_url = "https://{HOST}/token"\n'
        f'api_base = "https://{OTHER}"\nclient_id = "c"\nclient_secret_env = "T_SECRET"\n'
        f'[breaker]\nstore = "sqlite:///{db}"\n')
    breaker = _open_on(db, time.time)
    breaker.record_failure(HOST, CAUSE, decision=breaker.admit(HOST))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE breaker SET trips = 'many' WHERE host = ?", (HOST,))
    assert main(["breaker", "status", "--targets", str(targets)]) == 0
    out = capsys.readouterr().out
    assert f"{HOST}: unknown" in out and "cannot be read" in out
    assert main(["breaker", "clear", HOST, "--targets", str(targets)]) == 0
    assert f"{HOST}: closed" in capsys.readouterr().out


# ---------------------------------------------------------------- a network filesystem


MOUNTS = """\
sysfs /sys sysfs rw,nosuid 0 0
/dev/sda1 / ext4 rw,relatime 0 0
fileserver:/export/home /home nfs4 rw,vers=4.2 0 0
//nas/share /mnt/share cifs rw 0 0
me@box:/data /mnt/my\\040box fuse.sshfs rw 0 0
tmpfs /home/local tmpfs rw 0 0
"""


@pytest.mark.parametrize("path, fstype, network", [
    ("/home/alice/.cxhealth/breaker.sqlite3", "nfs4", True),
    ("/mnt/share/x.sqlite3", "cifs", True),
    ("/mnt/my box/x.sqlite3", "fuse.sshfs", True),
    ("/home/local/x.sqlite3", "tmpfs", False),  # the deepest mount point wins
    ("/var/lib/x.sqlite3", "ext4", False),
    ("/homework/x", "ext4", False),  # a prefix of a name is not a parent folder
])
def test_the_filesystem_of_a_path_from_a_mounts_table(path, fstype, network) -> None:
    assert filesystem_type(path, MOUNTS) == fstype
    assert is_network_fs(filesystem_type(path, MOUNTS)) is network


def test_an_sqlite_store_on_a_network_filesystem_is_refused_naming_redis(tmp_path, monkeypatch) -> None:
    from cxhealth.tasks.breaker import filesystem

    mounts = tmp_path / "mounts"
    mounts.write_text(f"server:/export {tmp_path} nfs4 rw 0 0\n/dev/sda1 / ext4 rw 0 0\n")
    real = filesystem.network_fs_of
    monkeypatch.setattr(filesystem, "network_fs_of", lambda p, mounts_file=str(mounts): real(p, mounts_file))
    from cxhealth.tasks.breaker import sqlite_store

    monkeypatch.setattr(sqlite_store, "network_fs_of", filesystem.network_fs_of)
    with pytest.raises(ValueError) as err:
        open_breaker(f"sqlite:///{tmp_path}/breaker.sqlite3", CONFIG)
    message = str(err.value)
    assert "network filesystem (nfs4)" in message and "redis://" in message and "\n" not in message


# ---------------------------------------------------------------- `cxhealth run` with its Redis down


def test_run_with_its_redis_down_reports_the_fallback_queues_alerts_locally_and_delivers_them_later(
        tmp_path, tls_lab, own_redis, monkeypatch) -> None:
    import json

    from cxhealth.lab.fake_slack import FakeSlack
    from tests.test_run_cli import run_cli

    expired = tls_lab.scenarios["cert_expired"]
    monkeypatch.setenv("FAULT_SECRET", "fault-secret-canary-77")
    monkeypatch.setenv("FAULT_SLACK_TOKEN", "xoxb-faults")
    with FakeSlack(token="xoxb-faults", channels={"C0F": "faults"}) as slack:
        path = tmp_path / "targets.toml"
        path.write_text("\n".join([
            "[[target]]", 'name = "expired"', 'platform = "generic"', 'client_id = "p"',
            'client_secret_env = "FAULT_SECRET"',
            f'token_url = "https://{expired.host}:{expired.port}/oauth/token"',
            f'api_base = "https://{expired.host}:{expired.port}"', 'endpoints = ["/v1/health"]',
            f'resolve = ["{expired.host}:{expired.port}:127.0.0.1"]', f'ca_bundle = "{tls_lab.client_store}"',
            "", "[slack]", 'bot_token_env = "FAULT_SLACK_TOKEN"', 'channel = "C0F"', f'api_base = "{slack.api_base}"',
            "", "[breaker]", f'store = "{own_redis.url}"', ""]))
        # Given the shared store is down
        own_redis.kill()
        reports = []
        for _ in range(3):
            code, out, err = run_cli("run", "--targets", str(path), "--json")
            assert code == 1, err
            reports.append(json.loads(out))
        # Then every report says so, the breaker still opened (on this machine's local store) ...
        assert all("local fallback store" in r["targets"][0]["breaker"].get("fallback", "") for r in reports)
        assert [r["targets"][0]["stage"] for r in reports] == ["handshake", "handshake", "breaker_open"]
        # ... and the alert was not dropped: delivered from the local outbox, said so
        assert all(r["alerts"]["fallback"] for r in reports)
        assert len(slack.top_level()) == 1
        # When Redis comes back (empty, as a Redis without persistence does)
        own_redis.start()
        code, out, _ = run_cli("run", "--targets", str(path), "--json")
        report = json.loads(out)
        # Then the breaker the machine recorded is still obeyed, not mistaken for "all closed"
        assert report["targets"][0]["stage"] == "breaker_open", report["targets"][0]["breaker"]
        # and the incident is the same: no second root message
        assert report["alerts"].get("fallback") is None
        assert len(slack.top_level()) == 1
        assert "fault-secret-canary-77" not in out + json.dumps([r for r in reports])


def test_a_redis_restarted_empty_while_the_breaker_was_open_is_not_taken_for_closed(own_redis) -> None:
    # Given the breaker opened on Redis (no fallback involved)
    breaker = open_breaker(own_redis.url, CONFIG, timeout_s=0.5, retry_after_s=0.01)
    for _ in range(2):
        breaker.record_failure(HOST, CAUSE, decision=breaker.admit(HOST))
    assert not breaker.admit(HOST).admitted
    breaker.close()
    # When Redis restarts empty (no persistence)
    own_redis.kill()
    own_redis.start()
    # Then the next run's breaker still turns callers away until the open time passes, and says why
    fresh = open_breaker(own_redis.url, CONFIG, timeout_s=0.5)
    decisions = [fresh.admit(HOST) for _ in range(3)]
    assert not any(d.admitted for d in decisions)
    assert all("recorded the breaker open" in (d.fallback or "") for d in decisions)
    assert fresh.admit(OTHER).admitted and fresh.admit(OTHER).fallback is None
    # and `breaker status` says what admit obeys, not the emptied store's "closed"
    status = fresh.status(HOST)
    assert status.state is BreakerState.OPEN and "recorded the breaker open" in (status.fallback or "")
    assert fresh.status(OTHER).state is BreakerState.CLOSED and fresh.status(OTHER).fallback is None
    # reset forgets it everywhere: the next caller is admitted by the store
    assert fresh.reset(HOST).state is BreakerState.CLOSED
    after = fresh.admit(HOST)
    assert after.admitted and after.fallback is None


def test_a_caller_admitted_just_before_another_process_opened_the_breaker_is_not_told_of_a_fallback(
        tmp_path) -> None:
    """The race behind a fallback that was not one: the store admits caller A while the breaker
    is still closed; before A looks at this machine's copy of OPENs, process B's failure opens
    the breaker and B mirrors the OPEN locally. A is turned away — by the store, which says
    OPEN too — and its report must not claim the store failed (``breaker.fallback``)."""
    from cxhealth.tasks.breaker import breaker as breaker_module
    from cxhealth.tasks.breaker.sqlite_store import SQLiteStore

    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    now = [T0 := 1_700_000_000.0]
    other = open_breaker(url, CONFIG, clock=lambda: now[0])  # process B (the same machine)

    class Interleaved(SQLiteStore):
        def admit(self, host, config, lease):
            decision = super().admit(host, config, lease)  # A is admitted while closed ...
            if decision.admitted:  # ... then B's two failures open it, mirrored on this machine
                other.record_failure(HOST, CAUSE)
                assert other.record_failure(HOST, CAUSE) is not None
            return decision

    caller = open_breaker(url, CONFIG, clock=lambda: now[0])
    path = breaker_module.sqlite_path(url)
    caller._factory = lambda: Interleaved(path, clock=lambda: now[0])
    caller._store = caller._factory()
    decision = caller.admit(HOST)
    assert not decision.admitted and decision.state is BreakerState.OPEN
    assert decision.fallback is None, decision.fallback
    assert decision.reopen_at is not None and decision.reopen_at.timestamp() == T0 + CONFIG.open_s
    caller.close()
    other.close()
