"""The flows an on-call engineer would find on the server, run against the full lab.

    PREFECT_API_URL=... python -m tests.browser.scenario STATE_DIR

Runs integration-health three times over the lab's four targets (the intercepted
partner fails twice, its breaker opens, the third run is turned away), then the
gated WFM sync for a healthy and for the broken integration. Prints one JSON line:
the flow run ids, for the browser test to open.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path


async def main(state: Path) -> dict:
    from cxhealth.flows.integration_health import integration_health
    from cxhealth.flows.wfm_sync import gated_wfm_sync
    from cxhealth.lab.fake_platform import FakePlatform
    from cxhealth.lab.fake_slack import FakeSlack
    from cxhealth.lab.full import LAB_SECRETS, SLACK_CHANNEL, lab_env, write_lab_targets
    from cxhealth.lab.tls_lab import TLSLab

    with TLSLab() as lab, FakePlatform(workdir=state / "platform") as fake, \
            FakeSlack(token=LAB_SECRETS["DEMO_SLACK_BOT_TOKEN"], channels=dict([SLACK_CHANNEL])) as slack:
        os.environ.update(lab_env(fake))
        targets = write_lab_targets(state / "targets.toml", state, lab, fake, slack)
        # a long open time: the third run must find the breaker open however slow the machine is
        targets.write_text(targets.read_text().replace("open_s = 30", "open_s = 600").replace(
            "max_open_s = 300", "max_open_s = 900"))
        runs = []
        for _ in range(3):
            s = await integration_health(targets_file=str(targets), return_state=True)
            runs.append({"id": str(s.state_details.flow_run_id), "state": s.name, "type": s.type.value})
        synced = await gated_wfm_sync(targets=["genesys-prod"], targets_file=str(targets),
                                      db_path=str(state / "wfm.sqlite3"), return_state=True)
        held = await gated_wfm_sync(targets=["partner-behind-proxy"], targets_file=str(targets),
                                    db_path=str(state / "wfm.sqlite3"), return_state=True)
        return {"runs": runs,
                "synced": {"id": str(synced.state_details.flow_run_id), "state": synced.name},
                "held": {"id": str(held.state_details.flow_run_id), "state": held.name, "message": held.message}}


if __name__ == "__main__":
    out = asyncio.run(main(Path(sys.argv[1])))
    print("SCENARIO " + json.dumps(out), flush=True)
