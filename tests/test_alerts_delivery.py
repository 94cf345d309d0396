"""Delivery against the lab's fake Slack: threads, webhooks, 429, outages, config errors.

Every Slack here is a real HTTP server on 127.0.0.1 (lab/fake_slack.py); time is
an injected clock and 429 waits go to an injected sleep, so nothing sleeps.
"""

from __future__ import annotations

import json

import pytest

from cxhealth.lab.fake_slack import FakeSlack
from cxhealth.tasks.alerts import Alerter, AlertSettings, MemoryAlertStore, SqliteAlertStore
from tests.test_alerts_payload import sample_result

TOKEN = "xoxb-lab-token"


class Clock:
    def __init__(self, t: float = 1_714_564_800.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Sleeps(list):
    """An injected sleep that records instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def slack():
    with FakeSlack(token=TOKEN, hang_s=10) as fake:
        yield fake


def bot_settings(slack: FakeSlack, **over) -> AlertSettings:
    kw = dict(mode="bot", channel="#alerts", api_base=slack.api_base, bot_token=TOKEN,
              timeout_s=0.5, repeat_interval_s=600, rate_limit_budget_s=5)
    kw.update(over)
    return AlertSettings(**kw)


def webhook_settings(slack: FakeSlack, **over) -> AlertSettings:
    url = slack.add_webhook("T000/B000/hooksecret")
    kw = dict(mode="webhook", webhook_url=url, timeout_s=0.5, repeat_interval_s=600, rate_limit_budget_s=5)
    kw.update(over)
    return AlertSettings(**kw)


def healthy(name: str = "genesys-prod") -> dict:
    return sample_result(name, healthy=True)


# ---------------------------------------------------------------- bot mode


def test_bot_incident_is_one_root_with_thread_updates_and_one_resolve(slack: FakeSlack) -> None:
    clock, store = Clock(), MemoryAlertStore()
    alerter = Alerter(bot_settings(slack), store, clock)

    # Given a target failing with an expired certificate
    report = alerter.process([sample_result(cause="cert_expired")])
    assert [d.outcome for d in report.decisions] == ["opened"]
    roots = slack.top_level()
    assert len(roots) == 1 and roots[0]["channel"] == "C0ALERTS"
    root_ts = roots[0]["ts"]
    assert "cert_expired" in roots[0]["text"] and roots[0]["blocks"][0]["type"] == "header"

    # When the same failure is seen again within the repeat interval: nothing is sent
    clock.advance(60)
    report = alerter.process([sample_result(cause="cert_expired")])
    assert report.suppressed == ("genesys-prod/cert_expired",) and report.sent == ()

    # When the breaker opens for it: a thread reply (a material change)
    clock.advance(60)
    report = alerter.process([sample_result(cause="breaker_open")])
    assert [s["action"] for s in report.sent] == ["post_reply"]

    # When the repeat interval passes with the failure still there: another thread reply
    clock.advance(700)
    alerter.process([sample_result(cause="breaker_open")])

    # When it heals: the root is updated to "resolved" and one resolve reply is posted
    clock.advance(60)
    report = alerter.process([healthy()])
    assert [(s["kind"], s["action"]) for s in report.sent] == [("resolve", "update_root"), ("resolve", "post_reply")]
    # And healthy again: nothing more
    assert alerter.process([healthy()]).sent == ()

    # Then: exactly one top-level message for the incident, updates in its thread
    assert len(slack.top_level()) == 1
    replies = slack.replies(root_ts)
    assert len(replies) == 3
    assert "still failing" in replies[0]["text"] and "still failing" in replies[1]["text"]
    assert replies[-1]["text"].startswith("[resolved]")
    root = slack.top_level()[0]
    assert len(root["updates"]) == 1 and "Resolved" in root["blocks"][0]["text"]["text"]
    assert store.outbox_size() == 0


def test_full_diagnostic_json_goes_into_the_thread_when_the_message_had_to_cut(slack: FakeSlack) -> None:
    # Given a diagnosis whose evidence exceeds the message budget
    result = sample_result(cause="incomplete_chain")
    result["handshake"]["evidence"] = {"aia_fetch": "x" * 20_000}
    alerter = Alerter(bot_settings(slack), MemoryAlertStore(), Clock())
    # When it is alerted
    report = alerter.process([result])
    # Then the files_upload_v2 sequence ran and the file sits in the root's thread
    assert [s["action"] for s in report.sent] == ["post_root", "upload_file"]
    assert [r.api_method for r in slack.requests] == [
        "chat.postMessage", "files.getUploadURLExternal", "upload", "files.completeUploadExternal"
    ]
    (upload,) = slack.uploads()
    root = slack.top_level()[0]
    assert upload["completed"] and upload["thread_ts"] == root["ts"] and root["files"] == [upload["id"]]
    assert json.loads(upload["content"])["handshake"]["evidence"]["aia_fetch"] == "x" * 20_000


def test_a_new_cause_resolves_the_old_incident_and_opens_a_new_one(slack: FakeSlack) -> None:
    clock = Clock()
    alerter = Alerter(bot_settings(slack), MemoryAlertStore(), clock)
    alerter.process([sample_result(cause="cert_expired")])
    clock.advance(30)
    report = alerter.process([sample_result(cause="hostname_mismatch")])
    assert [d.outcome for d in report.decisions] == ["cause_changed", "opened"]
    roots = slack.top_level()
    assert len(roots) == 2
    assert "Resolved" in roots[0]["blocks"][0]["text"]["text"]
    assert "hostname_mismatch" in slack.replies(roots[0]["ts"])[0]["text"] or any(
        "hostname_mismatch" in json.dumps(r["blocks"]) for r in slack.replies(roots[0]["ts"])
    )


def test_breaker_transitions_open_update_and_resolve_one_incident(slack: FakeSlack) -> None:
    clock = Clock()
    alerter = Alerter(bot_settings(slack), MemoryAlertStore(), clock)
    opened = {"kind": "opened", "host": "api.example.com", "at": clock(), "reopen_at": "T+30", "summary": {"failures": 2}}
    alerter.process([], [opened])
    alerter.process([], [opened])  # the same transition reported by another run: deduplicated
    clock.advance(31)
    alerter.process([], [{"kind": "reopened", "host": "api.example.com", "at": clock(), "reopen_at": "T+90"}])
    clock.advance(91)
    report = alerter.process([], [{"kind": "closed", "host": "api.example.com", "at": clock(), "reopen_at": None}])
    assert [d.outcome for d in report.decisions] == ["resolved"]
    (root,) = slack.top_level()
    assert root["text"].startswith("[resolved] breaker:api.example.com") and len(root["updates"]) == 1
    replies = slack.replies(root["ts"])
    assert len(replies) == 2 and "reopened" in replies[0]["text"] and replies[1]["text"].startswith("[resolved]")


def _with(result: dict, *transitions: dict) -> dict:
    result["transitions"] = list(transitions)
    return result


def _breaker_story(clock: Clock) -> list[dict]:
    """A target's four checks: fails, fails and trips the breaker, is turned away, heals (the probe)."""
    host = "login.mypurecloud.com"
    opened = {"kind": "opened", "host": host, "at": clock(), "reopen_at": "2024-05-01T12:00:30Z"}
    closed = {"kind": "closed", "host": host, "at": clock() + 90, "reopen_at": None}
    return [sample_result(cause="cert_expired"), _with(sample_result(cause="cert_expired"), opened),
            sample_result(cause="breaker_open"), _with(healthy(), closed)]


@pytest.mark.parametrize("mode", ["bot", "webhook"])
def test_the_breaker_opening_is_part_of_the_targets_incident_not_a_second_one(slack: FakeSlack, mode: str,
                                                                              tmp_path) -> None:
    """Contract §3: one incident (a target and its cause), one top-level message, one resolve —
    through the entry point every run uses (the report's results carry their transitions)."""
    from types import SimpleNamespace

    from cxhealth.tasks.alerts.run import deliver_alerts

    config = SimpleNamespace(breaker=SimpleNamespace(store=f"sqlite:///{tmp_path}/store.sqlite3"))
    settings = bot_settings(slack) if mode == "bot" else webhook_settings(slack)
    for result in _breaker_story(Clock()):
        deliver_alerts(config, settings, [result])
    if mode == "bot":
        (root,) = slack.top_level()
        assert "cert_expired" in root["text"] and len(root["updates"]) == 1  # chat.update on resolve
        replies = slack.replies(root["ts"])
        assert [r["text"].split(" ", 1)[0] for r in replies][-1] == "[resolved]"
        assert sum("breaker opened" in r["text"].lower() for r in replies) == 1, [r["text"][:60] for r in replies]
        assert "circuit breaker for login.mypurecloud.com closed" in replies[-1]["text"].lower() or any(
            "closed" in json.dumps(r.get("blocks")) for r in replies[-1:])
    else:
        posts = [json.loads(r.body) for r in slack.requests if "/services/" in r.path]
        texts = [p["text"] for p in posts]
        assert len(texts) == 2, texts  # the incident, then its resolve: no breaker message of its own
        assert "cert_expired" in texts[0] and texts[1].startswith("[resolved]")


# ---------------------------------------------------------------- webhook mode


def test_webhook_repeats_wait_for_the_interval_and_resolve_is_a_new_message(slack: FakeSlack) -> None:
    clock = Clock()
    alerter = Alerter(webhook_settings(slack, repeat_interval_s=600), MemoryAlertStore(), clock)
    alerter.process([sample_result(cause="cipher_mismatch")])
    for _ in range(5):  # five more runs within the interval: all held back
        clock.advance(60)
        assert alerter.process([sample_result(cause="cipher_mismatch")]).suppressed
    assert len(slack.messages()) == 1
    clock.advance(400)  # 700 s since the root: one repeat
    report = alerter.process([sample_result(cause="cipher_mismatch")])
    assert [s["kind"] for s in report.sent] == ["update"]
    clock.advance(10)
    alerter.process([healthy()])
    messages = slack.messages()
    assert [m["via"] for m in messages] == ["webhook"] * 3
    assert "CRITICAL" in messages[0]["blocks"][0]["text"]["text"]
    assert "Still failing" in messages[1]["blocks"][0]["text"]["text"]
    assert "RESOLVED" in messages[2]["blocks"][0]["text"]["text"]
    assert all(m["thread_ts"] is None for m in messages)
    assert {r.api_method for r in slack.requests} == {"webhook"}  # no Web API calls at all


# ---------------------------------------------------------------- rate limits


def test_429_retry_after_is_honoured_through_the_injected_sleep(slack: FakeSlack) -> None:
    sleeps = Sleeps()
    slack.fail("429", method="chat.postMessage", times=2, retry_after=1)
    alerter = Alerter(bot_settings(slack, rate_limit_budget_s=5), MemoryAlertStore(), Clock(), sleep=sleeps)
    report = alerter.process([sample_result(cause="cert_expired")])
    assert sleeps == [1.0, 1.0]  # Retry-After, honoured, twice; no real sleeping
    assert report.rate_limit_wait_s == 2.0
    assert len(slack.api_calls("chat.postMessage")) == 3 and len(slack.top_level()) == 1
    assert report.queued == 0 and report.errors == ()


def test_429_past_the_budget_leaves_the_alert_in_the_outbox_for_the_next_run(slack: FakeSlack) -> None:
    sleeps, clock, store = Sleeps(), Clock(), MemoryAlertStore()
    slack.fail("429", method="chat.postMessage", times=1, retry_after=120)
    alerter = Alerter(bot_settings(slack, rate_limit_budget_s=5), store, clock, sleep=sleeps)
    report = alerter.process([sample_result(cause="cert_expired")])
    assert sleeps == [] and report.queued == 1 and slack.top_level() == []
    assert any("rate limited" in e for e in report.errors)
    clock.advance(120)
    report = alerter.process([])
    assert [s["kind"] for s in report.sent] == ["open"] and len(slack.top_level()) == 1


def test_webhook_429_is_honoured_too(slack: FakeSlack) -> None:
    sleeps = Sleeps()
    slack.fail("429", method="webhook", times=1, retry_after=1)
    alerter = Alerter(webhook_settings(slack), MemoryAlertStore(), Clock(), sleep=sleeps)
    report = alerter.process([sample_result(cause="cert_expired")])
    assert sleeps == [1.0] and len(report.sent) == 1 and len(slack.messages()) == 1


# ---------------------------------------------------------------- outages


@pytest.mark.parametrize("failure", ["500", "hang"])
def test_an_outage_queues_the_alert_and_the_next_run_delivers_it_exactly_once(slack: FakeSlack, tmp_path, failure) -> None:
    clock = Clock()
    store = SqliteAlertStore(str(tmp_path / "breaker.sqlite3"))
    slack.fail(failure, method="chat.postMessage", times=1)
    settings = bot_settings(slack, timeout_s=0.3)

    # Given Slack answers 500 (or never answers) to the root post
    report = Alerter(settings, store, clock).process([sample_result(cause="cert_expired")])
    # Then nothing is lost: the alert is queued, the run goes on
    assert report.sent == () and report.queued == 1 and slack.top_level() == []
    assert report.errors and ("http_500" in report.errors[0] or "timeout" in report.errors[0])

    # When the next run comes (a new process: a new store connection), Slack is back
    store.close()
    store = SqliteAlertStore(str(tmp_path / "breaker.sqlite3"))
    clock.advance(60)
    report = Alerter(settings, store, clock).process([sample_result(cause="cert_expired")])
    # Then the queued root is delivered once, and the repeat is suppressed (same incident)
    assert [s["kind"] for s in report.sent] == ["open"] and report.queued == 0
    assert report.suppressed == ("genesys-prod/cert_expired",)
    # And a further run sends nothing again
    clock.advance(60)
    assert Alerter(settings, store, clock).process([]).sent == ()
    assert len(slack.top_level()) == 1 and len(slack.messages()) == 1


def test_queued_alerts_are_delivered_in_order_and_a_resolve_waits_for_its_root(slack: FakeSlack) -> None:
    clock, store = Clock(), MemoryAlertStore()
    settings = bot_settings(slack)
    slack.fail("500", times=2)
    # Given two targets fail while Slack is down (every post answered 500)
    Alerter(settings, store, clock).process([sample_result("a", "cert_expired"), sample_result("b", "tcp_refused")])
    assert store.outbox_size() == 2
    # When the next run sees "a" healthy and Slack is back
    clock.advance(60)
    report = Alerter(settings, store, clock).process([healthy("a"), sample_result("b", "tcp_refused")])
    # Then everything goes out in the order it happened: a's root, b's root, a's resolve in a's thread
    assert [(s["target"], s["action"]) for s in report.sent] == [
        ("a", "post_root"), ("b", "post_root"), ("a", "update_root"), ("a", "post_reply")
    ]
    roots = slack.top_level()
    assert [r["text"].split(":")[0] for r in roots] == ["[resolved] a", "[critical] b"]
    assert len(slack.replies(roots[0]["ts"])) == 1


# ---------------------------------------------------------------- permanent errors


@pytest.mark.parametrize("failure", ["invalid_auth", "channel_not_found"])
def test_permanent_errors_are_config_errors_and_the_alert_waits_for_a_fix(slack: FakeSlack, failure: str) -> None:
    clock, store = Clock(), MemoryAlertStore()
    slack.fail(failure, times=1)
    result = sample_result(cause="cert_expired")
    before = json.dumps(result, sort_keys=True)
    report = Alerter(bot_settings(slack), store, clock).process([result])
    # Then it is reported as a configuration problem, with a hint, and changes nothing else
    assert len(report.config_errors) == 1 and failure in report.config_errors[0]
    assert "[slack]" in report.config_errors[0]
    assert report.queued == 1 and slack.top_level() == []
    assert json.dumps(result, sort_keys=True) == before  # the verdict is the caller's, untouched
    # When the configuration is fixed, the next run delivers it
    clock.advance(60)
    report = Alerter(bot_settings(slack), store, clock).process([])
    assert report.config_errors == () and len(slack.top_level()) == 1


def test_a_wrong_channel_is_a_config_error_from_slack_itself(slack: FakeSlack) -> None:
    report = Alerter(bot_settings(slack, channel="#no-such-channel"), MemoryAlertStore(), Clock()).process(
        [sample_result()]
    )
    assert report.config_errors and "channel_not_found" in report.config_errors[0]


def test_a_wrong_token_is_invalid_auth(slack: FakeSlack) -> None:
    report = Alerter(bot_settings(slack, bot_token="xoxb-wrong"), MemoryAlertStore(), Clock()).process([sample_result()])
    assert report.config_errors and "invalid_auth" in report.config_errors[0]


def test_webhook_permanent_errors_are_config_errors(slack: FakeSlack) -> None:
    settings = AlertSettings(mode="webhook", webhook_url=f"{slack.url}/services/T/B/unknown", timeout_s=0.5)
    report = Alerter(settings, MemoryAlertStore(), Clock()).process([sample_result()])
    assert report.config_errors and "no_service" in report.config_errors[0] and report.queued == 1


def test_msg_too_long_falls_back_to_the_text_line(slack: FakeSlack) -> None:
    slack.fail("msg_too_long", method="chat.postMessage", times=1)
    report = Alerter(bot_settings(slack), MemoryAlertStore(), Clock()).process([sample_result()])
    assert [s["action"] for s in report.sent] == ["post_root"]
    (root,) = slack.top_level()
    assert root["blocks"] == [] and "cert_expired" in root["text"]


def test_missing_secret_is_a_config_error_and_queues(slack: FakeSlack) -> None:
    store = MemoryAlertStore()
    settings = AlertSettings(mode="bot", channel="#alerts", api_base=slack.api_base)
    report = Alerter(settings, store, Clock()).process([sample_result()])
    assert report.config_errors and "bot token" in report.config_errors[0]
    assert report.queued == 1 and slack.requests == []


def test_a_broken_store_is_reported_not_raised(slack: FakeSlack) -> None:
    class BrokenStore(MemoryAlertStore):
        def update_target(self, *a, **k):
            raise OSError("disk on fire")

    report = Alerter(bot_settings(slack), BrokenStore(), Clock()).process([sample_result()])
    assert report.errors == ("alert store unavailable (OSError)",)
