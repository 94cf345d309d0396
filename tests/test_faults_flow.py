"""Transitions first (issue 14, contract §3): a breaker transition's event and its Slack
message go out even when a later step of the flow run (the report artifact) fails."""

from __future__ import annotations

import asyncio

import pytest

from tests.test_flows import platform, targets_file  # noqa: F401 - the fixtures

pytestmark = pytest.mark.slow


def test_a_failing_artifact_never_costs_a_breaker_transition(prefect_harness, targets_file, monkeypatch):  # noqa: F811
    from cxhealth.flows import integration_health as ih
    from cxhealth.lab.fake_slack import FakeSlack

    events: list[str] = []
    real_emit = ih.emit_event

    def recording_emit(**kwargs):
        events.append(kwargs["event"])
        return real_emit(**kwargs)

    async def broken_artifact(**kwargs):
        raise RuntimeError("the artifact API is down")

    monkeypatch.setattr(ih, "emit_event", recording_emit)
    monkeypatch.setattr(ih, "create_markdown_artifact", broken_artifact)
    monkeypatch.setenv("FLOW_SLACK_TOKEN", "xoxb-flow")
    with FakeSlack(token="xoxb-flow", channels={"C0FLOW": "flow"}) as slack:
        with open(targets_file, "a") as fh:
            fh.write(f'\n[slack]\nbot_token_env = "FLOW_SLACK_TOKEN"\nchannel = "C0FLOW"\napi_base = "{slack.api_base}"\n')

        async def run():
            state = await ih.integration_health(targets=["expired-partner"], targets_file=str(targets_file),
                                                alerts=True, return_state=True)
            report = state.result(raise_on_failure=False)
            return await report if asyncio.iscoroutine(report) else report

        reports = [asyncio.run(run()) for _ in range(2)]  # the second failure opens the breaker
        # Then the transition's event and its Slack message went out, the artifact notwithstanding
        assert "cxhealth.breaker.opened" in events
        assert [t["kind"] for r in reports for d in r["targets"] for t in d["transitions"]] == ["opened"]
        (root,) = slack.top_level()
        assert any("reaker" in m["text"] for m in slack.replies(root["ts"]))
        assert all("report artifact not written" in " ".join(r.get("warnings", [])) for r in reports)
