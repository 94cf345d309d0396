"""A canary Slack token and webhook URL never leave the places that must carry them.

The bot token necessarily travels in the Authorization header, and a webhook
URL is the address posted to; everything else — every other header, every
body, every path of the fake Slack, the store file, the logs, reprs, reports —
must not contain them, on the happy path and on every failure path.
"""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from cxhealth.lab.fake_slack import FakeSlack, iter_request_texts
from cxhealth.tasks.alerts import Alerter, AlertConfigError, AlertSettings, Secret, open_alert_store
from cxhealth.tasks.alerts.delivery import BotDelivery, RateLimitBudget, WebhookDelivery
from tests.test_alerts_payload import sample_result


class Clock:
    def __init__(self) -> None:
        self.t = 1_714_564_800.0

    def __call__(self) -> float:
        return self.t


def _all_store_bytes(tmp_path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.glob("breaker.sqlite3*"))


def _exercise(alerter: Alerter, slack: FakeSlack, clock: Clock, *, webhook: bool) -> list:
    """Happy path and every failure mode, so every log and error path runs."""
    reports = []
    method = "webhook" if webhook else "chat.postMessage"
    for failure in ("500", "hang", "429", "invalid_auth", "channel_not_found", "msg_too_long"):
        slack.fail(failure, method=method, times=1, retry_after=0)
        reports.append(alerter.process([sample_result(f"t-{failure}", "cert_expired")]))
        clock.t += 10
    reports.append(alerter.process([]))  # drains what the failures left
    big = sample_result("big", "incomplete_chain")
    big["handshake"]["evidence"] = {"blob": "y" * 20_000}
    reports.append(alerter.process([big]))
    clock.t += 4000
    reports.append(alerter.process([sample_result(f"t-{f}", "cert_expired") for f in ("500", "hang")]))
    reports.append(alerter.process([sample_result(f"t-{f}", healthy=True) for f in ("500", "hang", "429")]))
    return reports


@pytest.mark.parametrize("mode", ["bot", "webhook"])
def test_the_canary_secret_appears_nowhere_but_where_it_must(mode, tmp_path, caplog) -> None:
    canary = f"CANARY{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)  # everything, including slack_sdk's own loggers
    for name in ("slack_sdk", "slack_sdk.web.base_client", "slack_sdk.webhook.client", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    token = f"xoxb-{canary}"
    with FakeSlack(token=token if mode == "bot" else None, hang_s=5) as slack:
        if mode == "bot":
            settings = AlertSettings.from_config(
                {"bot_token_env": "SLACK_BOT_TOKEN", "channel": "#alerts", "api_base": slack.api_base,
                 "timeout": 0.3, "repeat_interval_s": 3600},
                environ={"SLACK_BOT_TOKEN": token},
            )
        else:
            url = slack.add_webhook(f"T0/B0/{canary}")
            settings = AlertSettings.from_config(
                {"webhook_url_env": "SLACK_WEBHOOK_URL", "timeout": 0.3, "repeat_interval_s": 3600},
                environ={"SLACK_WEBHOOK_URL": url},
            )
        store = open_alert_store(f"sqlite:///{tmp_path}/breaker.sqlite3")
        clock = Clock()
        alerter = Alerter(settings, store, clock, sleep=lambda s: None)
        reports = _exercise(alerter, slack, clock, webhook=mode == "webhook")
        store.close()

        # the test is meaningful: the secret did travel where it must, and alerts went out
        if mode == "bot":
            assert all(canary in r.headers.get("authorization", "") for r in slack.requests if r.api_method not in ("upload",))
        else:
            assert all(canary in r.path for r in slack.requests)
        assert len(slack.top_level()) >= 7

        # Then: not in any other part of any request
        for text in iter_request_texts(slack, skip_authorization=True):
            assert canary not in text
        # nor in the store, its WAL included
        stored = _all_store_bytes(tmp_path)
        assert stored and canary.encode() not in stored
        # nor in any log line (formatted, with exceptions)
        assert caplog.records
        for record in caplog.records:
            assert canary not in record.getMessage()
        assert canary not in caplog.text
        # nor in reports, reprs and strs
        for report in reports:
            assert canary not in json.dumps(report.to_dict(), default=str) and canary not in repr(report)
        for obj in (settings, alerter, settings.bot_token, settings.webhook_url):
            assert canary not in repr(obj) and canary not in str(obj) and canary not in f"{obj}"
        budget = RateLimitBudget(1)
        delivery = BotDelivery(settings, budget) if mode == "bot" else WebhookDelivery(settings, budget)
        assert canary not in repr(delivery)


def test_secret_hides_its_value_and_from_config_names_only_the_variable() -> None:
    secret = Secret("xoxb-supersecret")
    assert "supersecret" not in repr(secret) and "supersecret" not in str(secret) and "supersecret" not in f"{secret}"
    assert secret.reveal() == "xoxb-supersecret"
    with pytest.raises(AlertConfigError) as info:
        AlertSettings.from_config({"bot_token_env": "MY_SLACK_TOKEN", "channel": "#a"}, environ={})
    assert "MY_SLACK_TOKEN" in str(info.value)
    with pytest.raises(AlertConfigError) as info:
        AlertSettings.from_config({"webhook_url_env": "HOOK"}, environ={"HOOK": "ftp://hooks.example/secretpart"})
    assert "secretpart" not in str(info.value)
    with pytest.raises(AlertConfigError):
        AlertSettings.from_config({"webhook_url_env": "A", "bot_token_env": "B"}, environ={"A": "x", "B": "y"})
    with pytest.raises(AlertConfigError):
        AlertSettings(mode="bot")  # no channel


def test_alert_settings_cannot_be_pickled_with_the_webhook_url_in_them() -> None:
    """The one Secret type refuses pickling: a Prefect result or a process pool never writes the URL."""
    import pickle

    settings = AlertSettings.from_config({"webhook_url_env": "HOOK"},
                                         environ={"HOOK": "https://hooks.slack.com/services/T/B/pickle-canary"})
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(settings)
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(settings.webhook_url)


def test_from_config_reads_the_slack_table() -> None:
    s = AlertSettings.from_config(
        {"webhook_url_env": "HOOK", "api_base": "http://127.0.0.1:9/api", "repeat_interval_s": 120, "timeout": 3},
        environ={"HOOK": "https://hooks.slack.com/services/T/B/x"},
    )
    assert s.mode == "webhook" and s.api_base == "http://127.0.0.1:9/api/" and s.repeat_interval_s == 120.0
    assert s.timeout_s == 3.0 and isinstance(s.webhook_url, Secret)


def test_the_canary_is_not_in_the_redis_store(request) -> None:
    from tests.conftest import need_service

    need_service("Redis", "127.0.0.1", 6379)
    canary = f"CANARY{uuid.uuid4().hex}"
    prefix = f"cxhealth:alerts:test-{uuid.uuid4().hex[:10]}:"
    token = f"xoxb-{canary}"
    store = open_alert_store("redis://127.0.0.1:6379/0", key_prefix=prefix)
    try:
        with FakeSlack(token=token, hang_s=5) as slack:
            settings = AlertSettings(mode="bot", channel="#alerts", api_base=slack.api_base, bot_token=token,
                                     timeout_s=0.3)
            clock = Clock()
            slack.fail("500", times=2)  # leave something queued (both roots)
            Alerter(settings, store, clock, sleep=lambda s: None).process(
                [sample_result("a", "cert_expired"), sample_result("b", "not_tls")]
            )
            assert store.outbox_size() == 2
            client = store._r
            keys = list(client.scan_iter(match=prefix + "*"))
            assert keys
            for key in keys:
                kind = client.type(key).decode()
                if kind == "string":
                    values = [client.get(key)]
                elif kind == "hash":
                    values = list(client.hgetall(key).values())
                elif kind == "list":
                    values = client.lrange(key, 0, -1)
                else:
                    values = []
                assert all(canary.encode() not in v for v in values), key
    finally:
        store.delete_all()
        store.close()
