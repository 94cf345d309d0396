"""Slack under faults: lost and late answers, a poison alert, a trickling answer, kill -9.

Issue 14. Each test injects the fault from outside the alerter — the fake Slack
stores a post and loses (or delays, or trickles) its answer, or the delivering
process is killed with SIGKILL — and counts what a user would see in the
channel: exactly one top-level message per incident, replies in its thread,
nothing lost. Time is an injected clock; nothing sleeps for seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cxhealth.lab.fake_slack import FakeSlack
from cxhealth.tasks.alerts import Alerter, AlertSettings, MemoryAlertStore, SqliteAlertStore
from cxhealth.tasks.alerts.outbox import default_owner, owner_is_dead
from tests.test_alerts_delivery import TOKEN, Clock, bot_settings, healthy, webhook_settings
from tests.test_alerts_payload import sample_result


@pytest.fixture
def slack():
    with FakeSlack(token=TOKEN, hang_s=3, trickle_s=0.2) as fake:
        yield fake


# ---------------------------------------------------------------- bot mode: read back, adopt


@pytest.mark.parametrize("fault", ["lose", "late"])
def test_bot_root_whose_answer_was_lost_is_adopted_not_posted_twice(slack: FakeSlack, tmp_path, fault) -> None:
    clock = Clock()
    path = str(tmp_path / "breaker.sqlite3")
    settings = bot_settings(slack, timeout_s=0.5)
    # Given Slack stores the root post but its answer is lost (or comes after the timeout)
    slack.fail(fault, method="chat.postMessage", times=1)
    report = Alerter(settings, SqliteAlertStore(path), clock).process([sample_result(cause="cert_expired")])
    assert report.sent == () and report.queued == 1
    assert len(slack.top_level()) == 1  # Slack has it; we do not know

    # When the next run comes (a new process), with a material change worth a thread reply
    clock.advance(60)
    report = Alerter(settings, SqliteAlertStore(path), clock).process([sample_result(cause="breaker_open")])
    # Then the root is read back and adopted, not posted again, and the update goes to its thread
    assert report.adopted == 1 and report.queued == 0
    (root,) = slack.top_level()
    assert [s["action"] for s in report.sent] == ["post_root", "post_reply"]
    assert report.sent[0]["ts"] == root["ts"] and report.sent[0].get("adopted")
    assert len(slack.replies(root["ts"])) == 1
    assert root["metadata"]["event_type"] == "cxhealth_alert"
    assert len(slack.api_calls("chat.postMessage")) == 2  # the lost root and the reply, no third


def test_bot_thread_reply_and_resolve_whose_answers_were_lost_appear_once(slack: FakeSlack) -> None:
    clock, store = Clock(), MemoryAlertStore()
    settings = bot_settings(slack, timeout_s=0.5)
    alerter = Alerter(settings, store, clock)
    alerter.process([sample_result(cause="cert_expired")])
    (root,) = slack.top_level()

    # Given the reply's answer is lost
    slack.fail("lose", method="chat.postMessage", times=1)
    clock.advance(60)
    assert alerter.process([sample_result(cause="breaker_open")]).queued == 1
    # And the resolve reply's answer too, on the next run
    slack.fail("lose", method="chat.postMessage", times=1)
    clock.advance(60)
    report = alerter.process([healthy()])
    assert report.adopted == 1  # the update found in the thread
    # Then a run later everything is there once
    clock.advance(60)
    report = alerter.process([healthy()])
    assert report.adopted == 1 and report.queued == 0
    replies = slack.replies(root["ts"])
    assert len(replies) == 2 and replies[-1]["text"].startswith("[resolved]")
    assert len(slack.top_level()) == 1


def test_a_read_back_that_fails_posts_nothing_blind(slack: FakeSlack) -> None:
    clock, store = Clock(), MemoryAlertStore()
    settings = bot_settings(slack, timeout_s=0.5)
    slack.fail("lose", method="chat.postMessage", times=1)
    Alerter(settings, store, clock).process([sample_result()])
    # When the read-back itself fails, the entry waits: no second post on a guess
    slack.fail("500", method="conversations.history", times=1)
    clock.advance(60)
    report = Alerter(settings, store, clock).process([])
    assert report.queued == 1 and len(slack.top_level()) == 1
    clock.advance(60)
    report = Alerter(settings, store, clock).process([])
    assert report.adopted == 1 and report.queued == 0 and len(slack.top_level()) == 1


# ---------------------------------------------------------------- webhook mode: at most one marked re-send


def test_webhook_lost_answer_is_resent_at_most_once_marked_as_a_possible_repeat(slack: FakeSlack) -> None:
    clock, store = Clock(), MemoryAlertStore()
    settings = webhook_settings(slack, timeout_s=0.5)
    slack.fail("lose", method="webhook", times=2)
    Alerter(settings, store, clock).process([sample_result()])
    assert store.outbox_size() == 1 and len(slack.messages()) == 1

    # The next run re-sends it once, marked; its answer is lost as well
    clock.advance(60)
    Alerter(settings, store, clock).process([])
    messages = slack.messages()
    assert len(messages) == 2 and messages[1]["text"].startswith("(possible repeat)")
    assert "Possible repeat" in str(messages[1]["blocks"][-1])
    # A third run sends nothing more: it is taken as delivered, and said so
    clock.advance(60)
    report = Alerter(settings, store, clock).process([])
    assert report.queued == 0 and report.unconfirmed and len(slack.messages()) == 2


def test_webhook_answer_lost_once_costs_one_marked_repeat_then_normal(slack: FakeSlack) -> None:
    clock, store = Clock(), MemoryAlertStore()
    settings = webhook_settings(slack, timeout_s=0.5)
    slack.fail("late", method="webhook", times=1)
    Alerter(settings, store, clock).process([sample_result()])
    clock.advance(60)
    report = Alerter(settings, store, clock).process([healthy()])
    texts = [m["text"] for m in slack.messages()]
    assert len(texts) == 3 and texts[1].startswith("(possible repeat)") and texts[2].startswith("[resolved]")
    assert report.queued == 0


def test_webhook_error_answers_are_not_lost_answers_the_alert_is_sent_until_slack_takes_it(slack: FakeSlack) -> None:
    # Given Slack answers the webhook 500 on two runs (an answer: the webhook did not post it)
    clock, store = Clock(), MemoryAlertStore()
    settings = webhook_settings(slack, timeout_s=0.5)
    slack.fail("500", method="webhook", times=2)
    Alerter(settings, store, clock).process([sample_result()])
    clock.advance(60)
    Alerter(settings, store, clock).process([])
    assert slack.messages() == [] and store.outbox_size() == 1
    # When it answers again, the alert is posted, once, and not marked as a possible repeat
    clock.advance(60)
    report = Alerter(settings, store, clock).process([])
    clock.advance(60)
    later = Alerter(settings, store, clock).process([])
    texts = [m["text"] for m in slack.messages()]
    assert len(texts) == 1 and not texts[0].startswith("(possible repeat)")
    assert report.queued == 0 and not report.unconfirmed and later.queued == 0 and not later.unconfirmed


# ---------------------------------------------------------------- a poison alert


def test_one_alert_slack_always_refuses_never_holds_back_the_others(slack: FakeSlack) -> None:
    clock, store = Clock(), MemoryAlertStore()
    settings = bot_settings(slack, max_attempts=3)
    # Given Slack answers HTTP 500 to every post about target "poison"
    slack.fail("500", method="chat.postMessage", times=1000, match="poison")
    report = Alerter(settings, store, clock).process(
        [sample_result("poison", "cert_expired"), sample_result("b", "tcp_refused"), sample_result("c", "not_tls")])
    # Then the others go out in the same run
    assert sorted(s["target"] for s in report.sent) == ["b", "c"]
    # And across runs the others' updates and resolves keep flowing
    for _ in range(2):
        clock.advance(700)
        report = Alerter(settings, store, clock).process(
            [sample_result("poison", "cert_expired"), healthy("b"), sample_result("c", "not_tls")])
    # After its retry budget the poison alert is a dead letter: reported, never blocking
    assert report.dead_letters and "poison/cert_expired" in report.dead_letters[0]
    assert "3 attempts failed" in report.dead_letters[0]
    assert store.outbox_size() == 0
    texts = [m["text"] for m in slack.top_level()]
    assert not any("poison" in t for t in texts) and len(texts) == 2
    b_root = next(m for m in slack.top_level() if m["text"].startswith("[resolved] b"))
    assert len(slack.replies(b_root["ts"])) == 1


# ---------------------------------------------------------------- the total deadline


def test_a_slack_answer_trickling_in_is_given_up_at_the_timeout(slack: FakeSlack) -> None:
    settings = bot_settings(slack, timeout_s=0.5)
    # Given Slack's answer arrives one byte every 0.2 s (a few hundred bytes: a minute or more)
    slack.fail("trickle", method="chat.postMessage", times=1)
    start = time.monotonic()
    report = Alerter(settings, MemoryAlertStore(), Clock()).process([sample_result()])
    elapsed = time.monotonic() - start
    # Then the run is not held: the call is given up at its deadline, and the alert waits
    assert elapsed < 10, elapsed
    assert report.queued == 1 and report.errors and "timeout" in report.errors[0]


# ---------------------------------------------------------------- kill -9 mid-delivery

_CHILD = textwrap.dedent("""
    import sys
    from cxhealth.tasks.alerts import Alerter, AlertSettings, SqliteAlertStore
    from tests.test_alerts_payload import sample_result
    api_base, path = sys.argv[1], sys.argv[2]
    settings = AlertSettings(mode="bot", channel="#alerts", api_base=api_base, bot_token="%s", timeout_s=60)
    Alerter(settings, SqliteAlertStore(path), lambda: 1_714_564_800.0).process([sample_result(cause="cert_expired")])
""" % TOKEN)


def test_kill_9_mid_delivery_then_the_next_run_delivers_at_once_without_a_duplicate(tmp_path) -> None:
    path = str(tmp_path / "breaker.sqlite3")
    with FakeSlack(token=TOKEN, hang_s=120) as slack:
        # Given a run whose root post Slack stores but does not answer yet
        slack.fail("late", method="chat.postMessage", times=1)
        child = subprocess.Popen([sys.executable, "-c", _CHILD, slack.api_base, path],
                                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        try:
            deadline = time.monotonic() + 60
            while not slack.top_level() and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.05)
            assert slack.top_level(), "the child never posted"
        finally:
            # When the process is killed mid-delivery (it holds the drain lease)
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        # Then the next run takes over at once and adopts the stored post (no second root)
        settings = AlertSettings(mode="bot", channel="#alerts", api_base=slack.api_base, bot_token=TOKEN,
                                 timeout_s=1)
        start = time.monotonic()
        report = Alerter(settings, SqliteAlertStore(path), Clock(1_714_564_860.0)).process(
            [sample_result(cause="breaker_open")])
        assert time.monotonic() - start < 30
        assert report.adopted == 1 and report.queued == 0
        (root,) = slack.top_level()
        assert len(slack.replies(root["ts"])) == 1


def test_a_lease_holder_is_dead_only_when_its_process_is_gone() -> None:
    me = default_owner()
    assert not owner_is_dead(me)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host, _, started, rand = me.split(":")
    assert owner_is_dead(f"{host}:{dead.pid}:{started}:{rand}")
    assert not owner_is_dead(f"other-machine:{dead.pid}:{started}:{rand}")  # other machines: wait for the TTL
    assert not owner_is_dead("a")  # not ours to judge


# ---------------------------------------------------------------- what held keeps holding


def test_slack_down_five_runs_then_back_delivers_everything_once_in_order(slack: FakeSlack, tmp_path) -> None:
    clock = Clock()
    path = str(tmp_path / "breaker.sqlite3")
    settings = bot_settings(slack, timeout_s=0.3)
    runs = [
        [sample_result("a", "cert_expired"), sample_result("b", "tcp_refused")],
        [sample_result("a", "breaker_open"), sample_result("b", "tcp_refused")],
        [healthy("a"), sample_result("b", "tcp_refused")],
        [healthy("a"), sample_result("b", "not_tls")],
        [healthy("a"), healthy("b")],
    ]
    for run in runs:  # Slack down: every request fails, alternately 500 and hung
        slack.fail("500" if len(slack.requests) % 2 else "hang", times=1000)
        Alerter(settings, SqliteAlertStore(path), clock).process(run)
        slack.clear_failures()
        clock.advance(120)
    assert slack.messages() == []
    report = Alerter(settings, SqliteAlertStore(path), clock).process([healthy("a"), healthy("b")])
    assert report.queued == 0 and not report.dead_letters
    roots = slack.top_level()
    assert [r["text"].split(":")[0] for r in roots] == ["[resolved] a", "[resolved] b", "[resolved] b"]
    a_thread = slack.replies(roots[0]["ts"])
    assert len(a_thread) == 2 and a_thread[-1]["text"].startswith("[resolved]")
    assert slack.replies(roots[1]["ts"])[-1]["text"].startswith("[resolved]")
    answered = [r for r in slack.api_calls("chat.postMessage") if r.status == 200]
    assert len(answered) == len(slack.messages())  # nothing posted twice


# ---------------------------------------------------------------- `cxhealth alerts`


def test_alerts_command_shows_dead_letters_and_retries_them(slack: FakeSlack, tmp_path) -> None:
    import io
    import json
    from contextlib import redirect_stderr, redirect_stdout

    from cxhealth.cli.main import main

    path = tmp_path / "breaker.sqlite3"
    targets = tmp_path / "targets.toml"
    targets.write_text(
        '[[target]]\nname = "t"\nplatform = "generic"\ntoken_url = "https://auth.example.test/token"\n'
        'api_base = "https://api.example.test"\nclient_id = "c"\nclient_secret_env = "T_SECRET"\n'
        f'[breaker]\nstore = "sqlite:///{path}"\n')
    store = SqliteAlertStore(str(path))
    slack.fail("500", method="chat.postMessage", times=1000, match="poison")
    Alerter(bot_settings(slack, max_attempts=1), store, Clock()).process([sample_result("poison")])

    def cli(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
        return code, out.getvalue(), err.getvalue()

    code, out, _ = cli("alerts", "status", "--targets", str(targets), "--json")
    (dead,) = json.loads(out)
    assert code == 0 and dead["state"] == "dead" and dead["target"] == "poison" and "http_500" in dead["last_error"]
    code, out, _ = cli("alerts", "status", "--targets", str(targets))
    assert code == 0 and out.startswith("dead") and "poison/cert_expired" in out
    code, out, _ = cli("alerts", "retry", dead["id"], "--targets", str(targets))
    assert code == 0 and store.outbox_size() == 1 and store.outbox_dead() == []
    code, _, err = cli("alerts", "retry", "nope", "--targets", str(targets))
    assert code == 2 and err.startswith("error: no dead letter")
    code, out, _ = cli("alerts", "drop", dead["id"], "--targets", str(targets))
    assert code == 0 and store.outbox_size() == 0


_QUIET_CHILD = textwrap.dedent("""
    import sys
    from cxhealth.tasks.alerts import Alerter, AlertSettings, MemoryAlertStore
    from tests.test_alerts_payload import sample_result
    settings = AlertSettings(mode="bot", channel="#alerts", api_base=sys.argv[1], bot_token=sys.argv[2],
                             timeout_s=0.5)
    report = Alerter(settings, MemoryAlertStore()).process([sample_result("quiet", "cert_expired")])
    print(report.queued)
""")


@pytest.mark.parametrize("fault", ["500", "lose"])  # an HTML 500; the connection closed without an answer
def test_a_slack_failure_leaves_no_library_lines_on_stderr(fault) -> None:
    with FakeSlack(token=TOKEN, hang_s=3) as slack:
        # Given Slack fails (slack_sdk logs "Failed to decode Slack API response" / "Failed to send ..." at ERROR)
        slack.fail(fault, method="chat.postMessage", times=10)
        done = subprocess.run([sys.executable, "-c", _QUIET_CHILD, slack.api_base, TOKEN], capture_output=True,
                              text=True, timeout=60,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # Then the alert waits in the outbox and stderr has the tool's one line, no slack_sdk line
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    assert done.stderr.splitlines() == [line for line in done.stderr.splitlines() if "alert queued" in line]
    assert len(done.stderr.splitlines()) == 1, done.stderr
