"""Blocks → the one Target model, secrets kept out of every value, import_toml, the Automations.

All under the session's one Prefect harness. The harness is shared with the flow
tests, so every block, settings block and Automation made here is deleted again,
and no test leaves a ``default`` settings block behind (the flows would pick it up).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import pickle
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("prefect_harness")

CANARY = "canary-block-secret-5e1d-do-not-leak"
PIN = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="  # a well-formed SPKI pin (32 bytes)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def cleanup():
    """Blocks to delete after the test, as (block class, name)."""
    made: list[tuple[type, str]] = []
    yield made
    for cls, name in made:
        try:
            cls.delete(name)
        except Exception:  # noqa: BLE001 - already gone
            pass


def save(cleanup, block, name: str):
    block.save(name, overwrite=True)
    cleanup.append((type(block), name))
    return block


def _toml(tmp_path: Path, text: str, name: str = "targets.toml") -> Path:
    (tmp_path / "ca.pem").write_text("not parsed by the loader\n")
    path = tmp_path / name
    path.write_text(text)
    return path


TOML = """
[defaults]
tls_min = 1.2
timeout = 7
ca_bundle = "ca.pem"
expect_issuers = ["Lab Root"]

[[target]]
name = "Blk.Genesys_1"
platform = "genesys"
region = "eu_west_1"
client_id = "gid"
client_secret_env = "BLK_GENESYS_SECRET"
endpoints = ["/api/v2/organizations/me"]
resolve = ["login.mypurecloud.ie:443:127.0.0.1"]

[[target]]
name = "blk-nice"
platform = "nice"
client_id = "nid"
client_secret_env = "BLK_NICE_SECRET"
access_key_id = "ak"
access_key_secret_env = "BLK_NICE_AK"
tls_max = "1.2"
timeout = 3
pins = ["sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]

[[target]]
name = "blk-partner"
platform = "generic"
token_url = "https://auth.example.com/oauth/token"
api_base = "https://api.example.com"
grant = "client_credentials"
client_id = "p"
client_secret_env = "BLK_PARTNER_SECRET"
sni = "api.example.com"

[slack]
bot_token_env = "BLK_SLACK_TOKEN"
channel = "C0LAB"
api_base = "http://127.0.0.1:9/api/"

[breaker]
threshold = 3
window_s = 30
store = "sqlite:////tmp/cxhealth-blocks-test.sqlite3"
"""
SECRETS = {"BLK_GENESYS_SECRET": CANARY + "-genesys", "BLK_NICE_SECRET": CANARY + "-nice",
           "BLK_NICE_AK": CANARY + "-ak", "BLK_PARTNER_SECRET": CANARY + "-partner",
           "BLK_SLACK_TOKEN": "xoxb-" + CANARY}
SETTINGS = "blk-test-settings"   # never "default": the flow tests share this server
POLICY = "blk-test-policy"


def _import(path: Path, cleanup, *extra: str) -> int:
    from cxhealth.blocks import CxBreakerSettings, CxSlackSettings, CxTarget, CxTLSPolicy
    from cxhealth.blocks.import_toml import main

    rc = main([str(path), "--settings-name", SETTINGS, "--policy-name", POLICY, *extra])
    cleanup += [(CxTarget, n) for n in ("blk-genesys-1", "blk-nice", "blk-partner")]
    cleanup += [(CxTLSPolicy, POLICY), (CxSlackSettings, SETTINGS), (CxBreakerSettings, SETTINGS)]
    return rc


# ---------------------------------------------------------------------------
# Each block saves and loads
# ---------------------------------------------------------------------------

def test_each_block_saves_and_loads_with_secrets_encrypted(cleanup):
    from cxhealth.blocks import CxBreakerSettings, CxSlackSettings, CxTarget, CxTLSPolicy

    blocks = {
        "blk-save-target": CxTarget(platform="genesys", region="us_east_1", client_id="c", client_secret=CANARY,
                                    endpoints=["/api/v2/tokens/me"], tls_policy="blk-save-policy"),
        "blk-save-policy": CxTLSPolicy(tls_min="1.2", tls_max="1.2", pins=[PIN], timeout=4),
        "blk-save-webhook": CxSlackSettings(webhook_url="https://hooks.slack.com/services/" + CANARY),
        "blk-save-bot": CxSlackSettings(mode="bot", bot_token_env="SLACK_BOT_TOKEN", channel="C1"),
        "blk-save-breaker": CxBreakerSettings(threshold=3, store="redis://127.0.0.1:6379/0"),
    }
    for name, block in blocks.items():
        save(cleanup, block, name)
    for name, block in blocks.items():
        loaded = type(block).load(name)
        assert loaded.model_dump() == block.model_dump()
        assert CANARY not in repr(loaded) and CANARY not in str(loaded.model_dump())
    assert CxTarget.load("blk-save-target").client_secret.get_secret_value() == CANARY


@pytest.mark.parametrize("values, message", [
    (dict(client_secret="a", client_secret_env="B"), "set only one of"),
    (dict(), "set one of client_secret"),
    (dict(client_secret_env="not a name"), "environment variable name"),
    (dict(client_secret="a", access_key_secret="b", access_key_secret_block="c"), "access_key_secret: set only one"),
])
def test_a_target_block_takes_exactly_one_source_per_secret_and_never_echoes_it(values, message):
    from pydantic import ValidationError

    from cxhealth.blocks import CxTarget

    with pytest.raises(ValidationError, match=message) as info:
        CxTarget(platform="genesys", region="us_east_1", client_id="c", **values)
    assert "input_value" not in str(info.value)  # the plain secret would be in it


@pytest.mark.parametrize("values, message", [
    (dict(), "exactly one of webhook_block, webhook_url, webhook_url_env"),
    (dict(mode="bot", bot_token_env="T"), "bot mode needs channel"),
    (dict(webhook_url_env="W", bot_token_env="T"), "belong to the other mode"),
    (dict(webhook_url_env="W", api_base="ftp://x"), "http"),
])
def test_slack_settings_need_one_secret_for_their_mode(values, message):
    from pydantic import ValidationError

    from cxhealth.blocks import CxSlackSettings

    with pytest.raises(ValidationError, match=message):
        CxSlackSettings(**values)


# ---------------------------------------------------------------------------
# Blocks -> the same Target / TargetsConfig values as the TOML
# ---------------------------------------------------------------------------

def test_imported_env_refs_load_as_the_same_targets_slack_and_breaker_as_the_toml(tmp_path, cleanup, capsys):
    from cxhealth.blocks import CxTarget, CxTLSPolicy, load_config_from_blocks
    from cxhealth.tasks.targets import load_targets

    path = _toml(tmp_path, TOML)
    assert _import(path, cleanup, "--keep-env-refs") == 0
    toml = load_targets(path)
    config, env = load_config_from_blocks([t.name for t in toml.targets], slack=SETTINGS, breaker=SETTINGS)
    assert config.targets == toml.targets                      # every field (source is not compared)
    assert config.slack == toml.slack and config.breaker == toml.breaker
    assert env.block_names == ()                              # env refs: nothing held by the loader
    # [defaults]' TLS keys live once, in the policy block; a target's own key wins over it.
    assert CxTLSPolicy.load(POLICY).values() == {"tls_min": "1.2", "timeout": 7.0, "ca_bundle": str(tmp_path / "ca.pem"),
                                                 "expect_issuers": ["Lab Root"]}
    nice = CxTarget.load("blk-nice")
    assert (nice.tls_policy, nice.timeout, nice.tls_min, nice.ca_bundle) == (POLICY, 3.0, None, None)
    # A target name that is not a block name is found through block_name_for().
    assert CxTarget.load("blk-genesys-1").name == "Blk.Genesys_1"
    assert "saved cxhealth-target/blk-genesys-1 (client_secret: env BLK_GENESYS_SECRET)" in capsys.readouterr().out


def test_every_target_block_loads_when_no_names_are_given(tmp_path, cleanup):
    from cxhealth.blocks import load_config_from_blocks
    from cxhealth.tasks.targets import load_targets

    path = _toml(tmp_path, TOML)
    assert _import(path, cleanup, "--keep-env-refs") == 0
    config, _ = load_config_from_blocks(None, slack=SETTINGS, breaker=SETTINGS)
    mine = {t.name: t for t in config.targets if t.name in {"Blk.Genesys_1", "blk-nice", "blk-partner"}}
    assert mine == {t.name: t for t in load_targets(path).targets}


def test_block_secrets_reach_the_checks_only_through_the_env_mapping(tmp_path, cleanup, monkeypatch, capsys):
    from cxhealth.blocks import BlockSecrets, load_config_from_blocks, synthetic_env_name
    from cxhealth.tasks.targets import load_targets

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    path = _toml(tmp_path, TOML)
    assert _import(path, cleanup) == 0
    assert CANARY not in capsys.readouterr().out
    for name in SECRETS:  # the worker has no environment: the blocks hold the secrets
        monkeypatch.delenv(name)
    toml = load_targets(path)
    config, env = load_config_from_blocks([t.name for t in toml.targets], slack=SETTINGS, breaker=SETTINGS)

    # The config is the TOML's, except that secrets go by synthetic names.
    genesys = config.target("Blk.Genesys_1")
    assert genesys.client_secret_env == synthetic_env_name("TARGET", "blk-genesys-1", "CLIENT_SECRET") \
        == "CXHEALTH_BLOCK_TARGET_BLK_GENESYS_1_CLIENT_SECRET"
    for got, want in zip(config.targets, toml.targets):
        assert {**got.to_dict(), "client_secret_env": None, "access_key_secret_env": None} == \
            {**want.to_dict(), "client_secret_env": None, "access_key_secret_env": None}
    # ... and the values resolve at use time from the mapping, never from a value in the config.
    assert genesys.client_secret(env).reveal() == SECRETS["BLK_GENESYS_SECRET"]
    nice = config.target("blk-nice")
    assert nice.access_key_secret(env).reveal() == SECRETS["BLK_NICE_AK"]
    assert config.slack.bot_token(env).reveal() == SECRETS["BLK_SLACK_TOKEN"]
    assert set(env.block_names) == {synthetic_env_name("TARGET", b, s) for b, s in [
        ("blk-genesys-1", "CLIENT_SECRET"), ("blk-nice", "CLIENT_SECRET"), ("blk-nice", "ACCESS_KEY_SECRET"),
        ("blk-partner", "CLIENT_SECRET")]} | {synthetic_env_name("SLACK", SETTINGS, "BOT_TOKEN")}

    # The canary is nowhere but in the mapping's values.
    assert CANARY not in json.dumps([t.to_dict() for t in config.targets])
    assert CANARY not in repr(config) and CANARY not in str(config)
    assert CANARY not in repr(env) and CANARY not in str(env)
    assert CANARY not in repr(genesys.client_secret(env))
    with pytest.raises(TypeError):
        pickle.dumps(env)
    assert isinstance(env, BlockSecrets) and env[genesys.client_secret_env].startswith(CANARY)


def test_a_block_may_name_a_secret_block_and_prefect_slack_blocks(cleanup, monkeypatch):
    from prefect.blocks.system import Secret
    from prefect_slack import SlackCredentials, SlackWebhook

    from cxhealth.blocks import CxSlackSettings, CxTarget, load_config_from_blocks

    save(cleanup, Secret(value="0123456789"), "blk-ref-secret")  # digits: must stay a string
    save(cleanup, CxTarget(platform="generic", token_url="https://auth.example.com/t", api_base="https://api.example.com",
                           client_id="p", client_secret_block="blk-ref-secret"), "blk-ref-target")
    save(cleanup, SlackWebhook(url="https://hooks.slack.com/services/" + CANARY), "blk-ref-hook")
    save(cleanup, CxSlackSettings(webhook_block="blk-ref-hook"), "blk-ref-webhook")
    save(cleanup, SlackCredentials(token="xoxb-" + CANARY), "blk-ref-creds")
    save(cleanup, CxSlackSettings(mode="bot", credentials_block="blk-ref-creds", channel="C9"), "blk-ref-bot")

    config, env = load_config_from_blocks(["blk-ref-target"], slack="blk-ref-webhook")
    assert config.targets[0].client_secret(env).reveal() == "0123456789"
    assert config.slack.webhook_url(env).reveal().endswith(CANARY)
    config, env = load_config_from_blocks(["blk-ref-target"], slack="blk-ref-bot")
    assert (config.slack.mode, config.slack.channel) == ("bot", "C9")
    assert config.slack.bot_token(env).reveal() == "xoxb-" + CANARY
    assert CANARY not in repr(config)


def test_an_env_ref_block_resolves_from_the_worker_environment_at_use_time(cleanup, monkeypatch):
    from cxhealth.blocks import CxTarget, load_config_from_blocks
    from cxhealth.tasks.targets import TargetConfigError

    save(cleanup, CxTarget(platform="genesys", region="us_east_1", client_id="c", client_secret_env="BLK_LATE"),
         "blk-env-target")
    monkeypatch.delenv("BLK_LATE", raising=False)
    config, env = load_config_from_blocks(["blk-env-target"])
    with pytest.raises(TargetConfigError, match="BLK_LATE is not set"):
        config.targets[0].client_secret(env)
    monkeypatch.setenv("BLK_LATE", "late-value")
    assert config.targets[0].client_secret(env).reveal() == "late-value"


def test_missing_blocks_are_one_line_errors_naming_the_block(cleanup):
    from cxhealth.blocks import BlockConfigError, CxTarget, load_config_from_blocks
    from cxhealth.tasks.targets import TargetConfigError

    with pytest.raises(BlockConfigError, match="no CxHealth Target block named 'blk-nowhere'") as info:
        load_config_from_blocks(["blk-nowhere"])
    assert isinstance(info.value, TargetConfigError) and "\n" not in str(info.value)
    save(cleanup, CxTarget(platform="genesys", region="us_east_1", client_id="c", client_secret_env="X",
                           tls_policy="blk-no-policy"), "blk-dangling")
    with pytest.raises(BlockConfigError, match="no CxHealth TLS Policy block named 'blk-no-policy'"):
        load_config_from_blocks(["blk-dangling"])
    save(cleanup, CxTarget(platform="genesys", region="us_east_1", client_id="c", client_secret_env="X"), "blk-fine")
    with pytest.raises(BlockConfigError, match="no CxHealth Breaker Settings block named 'blk-none'"):
        load_config_from_blocks(["blk-fine"], breaker="blk-none")


def test_default_settings_blocks_apply_when_present(cleanup):
    from cxhealth.blocks import DEFAULT_SETTINGS_BLOCK, CxBreakerSettings, CxTarget, load_config_from_blocks
    from cxhealth.tasks.targets import BreakerSettings

    save(cleanup, CxTarget(platform="genesys", region="us_east_1", client_id="c", client_secret_env="X"), "blk-dflt")
    config, _ = load_config_from_blocks(["blk-dflt"])
    assert config.slack is None and config.breaker == BreakerSettings()
    save(cleanup, CxBreakerSettings(threshold=5, store="sqlite:////tmp/blk-default.sqlite3"), DEFAULT_SETTINGS_BLOCK)
    config, _ = load_config_from_blocks(["blk-dflt"])
    assert (config.breaker.threshold, config.breaker.store) == (5, "sqlite:////tmp/blk-default.sqlite3")


def test_the_async_loader_works_inside_an_async_flow(cleanup):
    from prefect import flow

    from cxhealth.blocks import CxTarget, aload_config_from_blocks, load_config_from_blocks

    save(cleanup, CxTarget(platform="genesys", region="us_east_1", client_id="c", client_secret=CANARY), "blk-in-flow")

    @flow(name="blk-load-in-flow")
    async def load_both() -> list[str]:
        config, env = await aload_config_from_blocks(["blk-in-flow"])
        sync_config, _ = load_config_from_blocks(["blk-in-flow"])  # the sync one also works here
        assert config.targets[0].client_secret(env).reveal() == CANARY
        return [config.targets[0].name, sync_config.targets[0].name]

    assert asyncio.run(load_both()) == ["blk-in-flow", "blk-in-flow"]


# ---------------------------------------------------------------------------
# import_toml: exit codes and one-line errors
# ---------------------------------------------------------------------------

def test_import_refuses_bad_input_with_one_line_and_exit_2(tmp_path, cleanup, monkeypatch, capsys):
    from cxhealth.blocks.import_toml import main

    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    path = _toml(tmp_path, TOML)
    cases = [
        ([str(path), "--settings-name", SETTINGS, "--policy-name", POLICY], "BLK_GENESYS_SECRET is not set"),
        ([str(tmp_path / "nope.toml")], "cannot read the targets file"),
        ([str(_toml(tmp_path, "[[target]]\nname='x'\nclient_secret='inline'\n", "inline.toml"))], "never written inline"),
        ([str(path), "--settings-name", "Not_A_Name"], "lowercase letters"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    path = _toml(tmp_path, TOML)
    assert _import(path, cleanup, "--keep-env-refs") == 0
    capsys.readouterr()
    assert _import(path, cleanup, "--keep-env-refs") == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "pass --overwrite" in err
    assert _import(path, cleanup, "--keep-env-refs", "--overwrite") == 0


def test_import_refuses_two_targets_that_would_share_a_block_name(tmp_path, capsys):
    from cxhealth.blocks.import_toml import main

    text = "\n".join(f'[[target]]\nname = "{n}"\nplatform = "genesys"\nregion = "us_east_1"\nclient_id = "c"\n'
                     f'client_secret_env = "X"\n' for n in ("a.b", "a_b"))
    assert main([str(_toml(tmp_path, text)), "--keep-env-refs"]) == 2
    assert "would both be block 'a-b'" in capsys.readouterr().err


def test_block_secrets_are_encrypted_in_the_prefect_database(tmp_path, cleanup, monkeypatch, prefect_harness):
    """Grep the harness's SQLite files: the stored canary is not there in plaintext."""
    from cxhealth.blocks import load_config_from_blocks

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    path = _toml(tmp_path, TOML)
    assert _import(path, cleanup) == 0
    load_config_from_blocks(["blk-nice"], slack=SETTINGS, breaker=SETTINGS)
    files = _prefect_files(prefect_harness)
    assert any(b"blk-genesys-1" in p.read_bytes() for p in files), "positive control: the grep sees block names"
    assert [str(p) for p in files if CANARY.encode() in p.read_bytes()] == []


def _prefect_files(prefect_harness) -> list[Path]:
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    url = PREFECT_API_DATABASE_CONNECTION_URL.value() or ""
    roots = [Path(prefect_harness)]
    if url.startswith("sqlite"):
        roots.append(Path(url.split("///", 1)[1]).parent)
    return sorted({p for r in roots for p in r.rglob("*") if p.is_file() and p.stat().st_size < 200_000_000})


def test_a_flow_run_from_blocks_uses_their_secrets_and_leaves_them_nowhere(tmp_path, cleanup, monkeypatch,
                                                                            prefect_harness, caplog):
    """Given the lab's targets imported into blocks (secrets encrypted) and no secret in the
    environment, when integration-health runs without a targets file, then the token
    requests succeed, and the canary is in no file under Prefect's home or database."""
    from cxhealth.blocks import DEFAULT_SETTINGS_BLOCK, CxBreakerSettings, CxTarget, CxTLSPolicy
    from cxhealth.blocks.import_toml import main
    from cxhealth.flows.integration_health import integration_health
    from cxhealth.lab.fake_platform import FakeCredentials, FakePlatform

    canary = CANARY + "-flow"
    caplog.set_level("DEBUG")
    monkeypatch.delenv("CXHEALTH_TARGETS", raising=False)
    with FakePlatform(credentials=FakeCredentials(genesys_client_secret=canary)) as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        path = fake.write_targets(tmp_path / "lab.toml", platforms=("genesys", "nice"))
        assert main([str(path), "--policy-name", "blk-lab-policy", "--overwrite"]) == 0
        cleanup += [(CxTarget, "lab-genesys"), (CxTarget, "lab-nice"), (CxTLSPolicy, "blk-lab-policy")]
        for name in fake.env():
            monkeypatch.delenv(name)
        save(cleanup, CxBreakerSettings(store=f"sqlite:///{tmp_path}/breaker.sqlite3"), DEFAULT_SETTINGS_BLOCK)

        state = asyncio.run(integration_health(targets=["lab-genesys", "lab-nice"], alerts=False,
                                               return_state=True))
        report = state.result(raise_on_failure=False)
        if asyncio.iscoroutine(report):
            report = asyncio.run(report)
        assert state.is_completed(), state.message
        assert {t["name"]: t["oauth"]["ok"] for t in report["targets"]} == {"lab-genesys": True, "lab-nice": True}
        assert len(fake.token_requests) == 2  # one token per target, with the block-held secrets

        # one unknown target name is that target's failure (listing the blocks there are), not the run's
        state = asyncio.run(integration_health(targets=["lab-genesys", "lab-typo"], alerts=False, return_state=True))
        partial = state.result(raise_on_failure=False)
        if asyncio.iscoroutine(partial):
            partial = asyncio.run(partial)
        by_name = {t["name"]: t for t in partial["targets"]}
        assert state.is_failed() and by_name["lab-genesys"]["healthy"] is True
        assert by_name["lab-typo"]["cause"] == "config_error"
        assert "prefect blocks" in by_name["lab-typo"]["summary"] and "lab-genesys" in by_name["lab-typo"]["summary"]

    files = _prefect_files(prefect_harness)
    assert any(b"lab-genesys" in p.read_bytes() for p in files), "positive control: the grep sees run data"
    assert [str(p) for p in files if canary.encode() in p.read_bytes()] == []
    assert canary not in caplog.text and canary not in json.dumps(report, default=str)


# ---------------------------------------------------------------------------
# deployments/automation.py against the harness API
# ---------------------------------------------------------------------------

def _automation_module():
    spec = importlib.util.spec_from_file_location("cxhealth_deploy_automation", ROOT / "deployments" / "automation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_automation_script_creates_pause_and_resume_idempotently_and_they_fire(capsys):
    from prefect.client.orchestration import get_client
    from prefect.events import emit_event

    automation = _automation_module()
    pool, queue = "blk-test-pool", "blk-test-wfm"
    names = automation.automation_names(queue)

    async def read_back():
        async with get_client() as client:
            found = {n: await client.read_automations_by_name(n) for n in names}
            wq = await client.read_work_queue_by_name(queue, work_pool_name=pool)
            return found, wq

    async def delete_all():
        async with get_client() as client:
            for n in names:
                for a in await client.read_automations_by_name(n):
                    await client.delete_automation(a.id)

    try:
        assert automation.main(["--pool", pool, "--queue", queue]) == 0
        assert automation.main(["--pool", pool, "--queue", queue]) == 0   # again: updated, not duplicated
        out = capsys.readouterr().out
        assert f"created work queue {queue} in {pool}" in out and "updated automation" in out
        found, wq = asyncio.run(read_back())
        assert [len(found[n]) for n in names] == [1, 1]
        pause, resume = found[names[0]][0], found[names[1]][0]
        assert pause.trigger.expect == {"cxhealth.breaker.opened"} and pause.trigger.posture == "Reactive"
        assert pause.trigger.threshold == 1
        assert resume.trigger.expect == {"cxhealth.breaker.closed"}
        assert [(a.type, a.work_queue_id) for a in pause.actions] == [("pause-work-queue", wq.id)]
        assert [(a.type, a.work_queue_id) for a in resume.actions] == [("resume-work-queue", wq.id)]

        # And on this server they act: a breaker event pauses the queue, the next resumes it.
        def wait_paused(expected: bool) -> bool:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if asyncio.run(read_back())[1].is_paused is expected:
                    return True
                time.sleep(0.2)
            return False

        resource = {"prefect.resource.id": "cxhealth.breaker.blk-test.example.com"}
        emit_event(event="cxhealth.breaker.opened", resource=resource)
        assert wait_paused(True)
        emit_event(event="cxhealth.breaker.closed", resource=resource)
        assert wait_paused(False)
    finally:
        asyncio.run(delete_all())


def test_the_automation_script_with_no_create_names_the_missing_queue(capsys):
    automation = _automation_module()
    assert automation.main(["--pool", "blk-no-such-pool", "--queue", "q", "--no-create"]) == 2
    err = capsys.readouterr().err
    assert "work pool 'blk-no-such-pool' does not exist" in err and err.count("\n") == 1


def test_prefect_yaml_deploys_names_only_on_the_pool_and_queues_the_automation_uses():
    import yaml

    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    deployments = {d["flow_name"]: d for d in spec["deployments"]}
    health, sync = deployments["integration-health"], deployments["gated-wfm-sync"]
    assert health["entrypoint"] == "cxhealth.flows.integration_health:integration_health"
    assert sync["entrypoint"] == "cxhealth.flows.wfm_sync:gated_wfm_sync"
    assert health["schedules"][0]["interval"] == 300 and sync["schedules"][0]["cron"] == "0 * * * *"
    assert health["work_pool"]["name"] == sync["work_pool"]["name"] == "cxhealth-pool"
    assert sync["work_pool"]["work_queue_name"] == "wfm-sync" != health["work_pool"]["work_queue_name"]
    for d in (health, sync):
        assert set(d["parameters"]) <= {"targets", "targets_file", "alerts", "db_path"}
    automation = _automation_module()
    assert (automation.DEFAULT_POOL, automation.DEFAULT_QUEUE) == ("cxhealth-pool", "wfm-sync")


def test_the_sync_automation_is_scoped_to_the_targets_its_deployment_names(capsys):
    """Given prefect.yaml's sync deployment naming genesys-prod, the pause/resume pair reacts to a
    breaker event related to genesys-prod and to no other target's (checked with the server's own
    matching, then live: the related event pauses the queue)."""
    from datetime import datetime, timezone
    from uuid import uuid4

    from prefect.client.orchestration import get_client
    from prefect.events import emit_event
    from prefect.server.events.schemas.automations import EventTrigger as ServerTrigger
    from prefect.server.events.schemas.events import ReceivedEvent

    automation = _automation_module()
    pool, queue = "blk-scoped-pool", "blk-scoped-wfm"
    names = automation.automation_names(queue, "hourly")

    async def read_back():
        async with get_client() as client:
            found = {n: await client.read_automations_by_name(n) for n in names}
            return found, await client.read_work_queue_by_name(queue, work_pool_name=pool)

    async def delete_all():
        async with get_client() as client:
            for n in names:
                for a in await client.read_automations_by_name(n):
                    await client.delete_automation(a.id)

    def event(name: str, target: str) -> ReceivedEvent:
        return ReceivedEvent(occurred=datetime.now(timezone.utc), event=name, id=uuid4(),
                             resource={"prefect.resource.id": "cxhealth.breaker.api.example.com"},
                             related=[{"prefect.resource.id": f"cxhealth.target.{target}",
                                       "prefect.resource.role": "target"}])

    try:
        assert automation.main(["--pool", pool, "--queue", queue, "--sync", "hourly",
                                "--prefect-file", str(ROOT / "deployments" / "prefect.yaml")]) == 0
        assert "of genesys-prod" in capsys.readouterr().out
        found, wq = asyncio.run(read_back())
        pause = ServerTrigger.model_validate(found[names[0]][0].trigger.model_dump(mode="json"))
        resume = ServerTrigger.model_validate(found[names[1]][0].trigger.model_dump(mode="json"))
        assert pause.covers(event("cxhealth.breaker.opened", "genesys-prod"))
        assert not pause.covers(event("cxhealth.breaker.opened", "partner-behind-proxy"))
        assert resume.covers(event("cxhealth.breaker.closed", "genesys-prod"))
        assert not resume.covers(event("cxhealth.breaker.closed", "partner-behind-proxy"))

        emit_event(event="cxhealth.breaker.opened", resource={"prefect.resource.id": "cxhealth.breaker.x.example"},
                   related=[{"prefect.resource.id": "cxhealth.target.genesys-prod", "prefect.resource.role": "target"}])
        deadline = time.monotonic() + 15
        while not asyncio.run(read_back())[1].is_paused and time.monotonic() < deadline:
            time.sleep(0.2)
        assert asyncio.run(read_back())[1].is_paused
    finally:
        asyncio.run(delete_all())


def test_the_sync_deployment_names_the_targets_it_depends_on():
    import yaml

    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    sync = next(d for d in spec["deployments"] if d["flow_name"] == "gated-wfm-sync")
    assert sync["parameters"]["targets"] == ["genesys-prod"]
    automation = _automation_module()
    assert automation.sync_from_prefect_yaml(str(ROOT / "deployments" / "prefect.yaml"), "hourly") == (
        ["genesys-prod"], "wfm-sync")
