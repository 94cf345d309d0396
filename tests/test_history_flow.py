"""The flow records too (contract §4): drift in the report, a cxhealth.tls.drift event, the trend in the artifact."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from tests.test_flows import _database_file, _poll_events, _run


def test_flow_reports_drift_emits_the_event_and_shows_the_trend(prefect_harness, tmp_path, monkeypatch):
    from cxhealth.lab.changing import ChangingTLSServer

    with ChangingTLSServer() as gateway:
        for k, v in gateway.env().items():
            monkeypatch.setenv(k, v)
        values = gateway.target_values("drifting-gateway")
        lines = [f'[breaker]\nstore = "sqlite:///{tmp_path}/breaker.sqlite3"\n',
                 f'[history]\nstore = "sqlite:///{tmp_path}/history.sqlite3"\n', "[[target]]",
                 *(f"{k} = {json.dumps(v)}" for k, v in values.items())]
        path = tmp_path / "targets.toml"
        path.write_text("\n".join(lines) + "\n")
        _, first = asyncio.run(_run(None, path))
        gateway.set_versions("1.2", "1.2")
        state, second = asyncio.run(_run(None, path))
    assert first["targets"][0]["drift"] == []
    drift = second["targets"][0]["drift"]
    assert [(d["code"], d["from"], d["to"]) for d in drift] == [("protocol_changed", "TLSv1.3", "TLSv1.2")]
    assert state.is_completed()
    rows = _poll_events(("cxhealth.tls.drift",))
    assert ("cxhealth.tls.drift", f"cxhealth.host.{gateway.host}") in rows
    with sqlite3.connect(f"file:{_database_file()}?mode=ro", uri=True, timeout=5) as db:
        artifacts = [r[0] for r in db.execute("select data from artifact where key = 'cxhealth-report'")]
    assert any("Trend and changes" in (a or "") and "protocol_changed" in (a or "") for a in artifacts)
