"""targets.toml → Target (contract §2), platform profiles, one-line config errors."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from cxhealth.lab.fake_platform import FakePlatform
from cxhealth.tasks.checks.endpoints import run_http_checks
from cxhealth.tasks.checks.retry import FakeClock
from cxhealth.tasks.platforms import GENESYS_REGIONS, build_profile, tenant_id_from_id_token
from cxhealth.tasks.targets import BreakerSettings, Secret, Target, TargetConfigError, load_targets, parse_targets
from cxhealth.tasks.tls.policy import BASELINE_CIPHERS

CONTRACT_EXAMPLE = textwrap.dedent('''
    [defaults]
    tls_min = "1.2"
    tls_max = "1.3"
    timeout = 5

    [[target]]
    name = "genesys-prod"
    platform = "genesys"
    region = "us_east_1"
    client_id = "abc"
    client_secret_env = "GENESYS_CLIENT_SECRET"
    endpoints = ["/api/v2/organizations/me", "/api/v2/flows?pageSize=1"]

    [[target]]
    name = "nice-prod"
    platform = "nice"
    client_id = "app"
    client_secret_env = "NICE_CLIENT_SECRET"
    access_key_id = "KEYID"
    access_key_secret_env = "NICE_ACCESS_KEY_SECRET"

    [[target]]
    name = "partner-api"
    platform = "generic"
    token_url = "https://auth.example.com/oauth/token"
    api_base = "https://api.example.com"
    client_id = "partner"
    client_secret_env = "PARTNER_SECRET"
    endpoints = ["/v1/health"]

    [slack]
    webhook_url_env = "SLACK_WEBHOOK_URL"

    [breaker]
    threshold = 3
''')


def write(tmp_path: Path, text: str, name: str = "targets.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def one_target(tmp_path: Path, body: str, defaults: str = "") -> Path:
    head = f"[defaults]\n{defaults}\n" if defaults else ""
    return write(tmp_path, head + "[[target]]\n" + textwrap.dedent(body))


GENESYS = 'name = "g"\nplatform = "genesys"\nregion = "us_east_1"\nclient_id = "id"\nclient_secret_env = "G_SECRET"\n'


def test_the_contract_example_loads_with_derived_urls_defaults_and_settings(tmp_path):
    config = load_targets(write(tmp_path, CONTRACT_EXAMPLE))

    genesys, nice, partner = config.targets
    assert genesys.profile().token_url == "https://login.mypurecloud.com/oauth/token"
    assert genesys.profile().api_base == "https://api.mypurecloud.com"
    assert genesys.profile().grant == "client_credentials"
    assert genesys.endpoint_paths == ("/api/v2/organizations/me", "/api/v2/flows?pageSize=1")
    assert genesys.timeout == 5.0 and genesys.tls_max == "1.3"
    assert nice.profile().token_url == "https://cxone.niceincontact.com/auth/token"
    assert nice.profile().api_base is None and nice.profile().needs_discovery
    assert nice.profile().discovery_url == "https://cxone.niceincontact.com/.well-known/cxone-configuration"
    assert nice.profile().grant == "password"
    assert nice.endpoint_paths == ("/inContactAPI/services/v25.0/server-time",)
    assert partner.profile().token_url == "https://auth.example.com/oauth/token"
    assert config.slack is not None and config.slack.webhook_url_env == "SLACK_WEBHOOK_URL"
    assert config.breaker == BreakerSettings(threshold=3)
    assert config.target("nice-prod") is nice


def test_every_genesys_region_of_the_facts_derives_login_and_api_hosts():
    assert len(GENESYS_REGIONS) == 17
    expected = {"us_east_1": "mypurecloud.com", "eu_west_1": "mypurecloud.ie", "ap_southeast_2": "mypurecloud.com.au",
                "ap_northeast_1": "mypurecloud.jp", "eu_central_1": "mypurecloud.de", "us_west_2": "usw2.pure.cloud",
                "ca_central_1": "cac1.pure.cloud", "ap_northeast_2": "apne2.pure.cloud", "eu_west_2": "euw2.pure.cloud",
                "ap_south_1": "aps1.pure.cloud", "us_east_2": "use2.us-gov-pure.cloud", "sa_east_1": "sae1.pure.cloud",
                "me_central_1": "mec1.pure.cloud", "ap_northeast_3": "apne3.pure.cloud",
                "eu_central_2": "euc2.pure.cloud", "mx_central_1": "mxc1.pure.cloud",
                "ap_southeast_1": "apse1.pure.cloud"}
    for region, domain in expected.items():
        profile = build_profile("genesys", region=region)
        assert profile.token_url == f"https://login.{domain}/oauth/token"  # login.<domain>, not api.<domain>
        assert profile.api_base == f"https://api.{domain}"


def test_nice_fedramp_region_selects_the_gov_issuer():
    profile = build_profile("nice", region="fedramp")
    assert profile.token_url == "https://cxone-gov.niceincontact.com/auth/token"


def test_explicit_urls_override_the_region():
    profile = build_profile("genesys", region="eu_west_1", token_url="https://login.example/oauth/token")
    assert profile.token_url == "https://login.example/oauth/token"
    assert profile.api_base == "https://api.mypurecloud.ie"


@pytest.mark.parametrize("body, must_contain", [
    (GENESYS.replace('"genesys"', '"avaya"'), ["platform", "genesys, nice, generic"]),
    (GENESYS.replace('"us_east_1"', '"us-east-1"'), ["region", "us_east_1", "eu_west_2"]),
    (GENESYS + 'client_secret = "hunter2"\n', ["client_secret", "client_secret_env"]),
    (GENESYS + 'endpoint = ["/x"]\n', ["unknown key 'endpoint'", "endpoints"]),
    (GENESYS.replace('client_secret_env = "G_SECRET"\n', ''), ["client_secret_env", "required"]),
    (GENESYS.replace('"G_SECRET"', '"my secret"'), ["client_secret_env", "environment variable name"]),
    (GENESYS + 'token_url = "http://login.example/oauth/token"\n', ["token_url", "https://"]),
    (GENESYS + 'resolve = ["login.example:443"]\n', ["resolve", "HOST:PORT:ADDR"]),
    (GENESYS + 'resolve = ["login.example:443:not-an-ip"]\n', ["resolve", "IP address"]),
    (GENESYS + 'tls_min = "1.3"\ntls_max = "1.2"\n', ["tls_min", "1.3"]),
    (GENESYS + 'tls_max = "1.4"\n', ["tls", "1.4"]),
    (GENESYS + 'timeout = "soon"\n', ["timeout", "positive number"]),
    (GENESYS + 'timeout = inf\n', ["timeout", "positive number", "inf"]),  # TOML floats: would never give up
    (GENESYS + 'timeout = nan\n', ["timeout", "positive number", "nan"]),
    (GENESYS + 'timeout = 1e308\n', ["timeout", "at most 300"]),
    (GENESYS + 'endpoints = ["api/v2/x"]\n', ["endpoints", "'/'"]),
    (GENESYS + 'pins = ["abc"]\n', ["pins", "sha256/"]),
    (GENESYS + 'ca_bundle = "missing.pem"\n', ["ca_bundle", "does not exist"]),
    ('name = "n"\nplatform = "nice"\nclient_id = "a"\nclient_secret_env = "S"\n', ["access_key_id", "password"]),
    ('name = "p"\nplatform = "generic"\nclient_id = "a"\nclient_secret_env = "S"\n', ["token_url", "api_base"]),
])
def test_a_bad_target_is_one_actionable_line_naming_file_target_and_key(tmp_path, body, must_contain):
    path = one_target(tmp_path, body)
    with pytest.raises(TargetConfigError) as info:
        load_targets(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert "target " in message
    for text in must_contain:
        assert text in message
    assert "hunter2" not in message


def test_file_level_errors_are_one_line(tmp_path):
    with pytest.raises(TargetConfigError, match="cannot read"):
        load_targets(tmp_path / "nope.toml")
    with pytest.raises(TargetConfigError, match="not valid TOML"):
        load_targets(write(tmp_path, "[[target]\nname="))
    with pytest.raises(TargetConfigError, match=r"no \[\[target\]\]"):
        load_targets(write(tmp_path, "[defaults]\ntimeout = 3\n"))
    with pytest.raises(TargetConfigError, match="must be unique"):
        load_targets(write(tmp_path, f"[[target]]\n{GENESYS}\n[[target]]\n{GENESYS}"))
    with pytest.raises(TargetConfigError, match="unknown table 'targets'"):
        load_targets(write(tmp_path, f"[[targets]]\n{GENESYS}"))


@pytest.mark.parametrize("table, message", [
    ('[slack]\nchannel = "#ops"\n', "webhook_url_env, or bot_token_env and channel"),
    ('[slack]\nwebhook_url = "https://hooks.slack.com/x"\n', "never written inline"),
    ('[slack]\nwebhook_url_env = "W"\napi_base = "ftp://x"\n', "http(s) URL"),
    ('[breaker]\nthreshold = 0\n', "threshold"),
    ('[breaker]\nstore = "postgres://x"\n', "sqlite:///path, redis://host:port/db"),
    ('[breaker]\nopen_s = 60\nmax_open_s = 30\n', "max_open_s"),
    ('[breaker]\nwindow = 60\n', "unknown key 'window'"),
])
def test_slack_and_breaker_tables_are_validated(tmp_path, table, message):
    with pytest.raises(TargetConfigError) as info:
        load_targets(write(tmp_path, f"[[target]]\n{GENESYS}\n{table}"))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_slack_bot_mode_and_a_test_api_base_are_accepted(tmp_path):
    config = load_targets(write(tmp_path, f'[[target]]\n{GENESYS}\n[slack]\nbot_token_env = "SLACK_BOT_TOKEN"\n'
                                          f'channel = "#ops"\napi_base = "http://127.0.0.1:9/api/"\n'))
    assert config.slack is not None and config.slack.mode == "bot"
    assert config.slack.bot_token({"SLACK_BOT_TOKEN": "xoxb-1"}).reveal() == "xoxb-1"
    assert config.breaker == BreakerSettings()


def test_defaults_apply_to_every_target_and_a_target_key_wins(tmp_path):
    text = (f'[defaults]\ntimeout = 2\ntls_max = "1.2"\n\n[[target]]\n{GENESYS}\n[[target]]\n'
            + GENESYS.replace('name = "g"', 'name = "g2"') + 'timeout = 9\n')
    first, second = load_targets(write(tmp_path, text)).targets
    assert (first.timeout, first.tls_max) == (2.0, "1.2")
    assert (second.timeout, second.tls_max) == (9.0, "1.2")


def test_relative_ca_bundle_is_relative_to_the_targets_file(tmp_path):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("")  # existence is what the loader checks
    target = load_targets(one_target(tmp_path, GENESYS + 'ca_bundle = "certs/ca.pem"\n')).targets[0]
    assert target.ca_bundle == str(tmp_path / "certs" / "ca.pem")


def test_policy_and_endpoints_to_diagnose_token_host_first_with_resolve_and_sni(tmp_path):
    target = Target(name="g", platform="genesys", region="eu_west_1", client_id="id", client_secret_env="S",
                    endpoints=("/api/v2/flows", "https://cluster.example:8443/api/v2/x"),
                    resolve=("login.mypurecloud.ie:443:10.0.0.5",), sni="gw.example", tls_max="1.2",
                    timeout=7, expect_issuers=("Amazon",))
    policy = target.policy()
    assert (policy.tls_min, policy.tls_max, policy.timeout, policy.ciphers) == ("1.2", "1.2", 7.0, BASELINE_CIPHERS)
    eps = target.endpoints_to_diagnose()
    assert [(e.host, e.port) for e in eps] == [("login.mypurecloud.ie", 443), ("api.mypurecloud.ie", 443),
                                               ("cluster.example", 8443)]
    assert eps[0].address == "10.0.0.5" and eps[1].address is None
    assert all(e.sni == "gw.example" for e in eps)
    assert target.diagnose_options().expect_issuers == ("Amazon",)


def test_nice_endpoints_to_diagnose_include_the_discovered_api_host():
    target = Target(name="n", platform="nice", client_id="a", client_secret_env="S", access_key_id="K",
                    access_key_secret_env="KS")
    hosts = [e.host for e in target.endpoints_to_diagnose()]
    assert hosts == ["cxone.niceincontact.com"]
    hosts = [e.host for e in target.endpoints_to_diagnose(api_base="https://api-na1.niceincontact.com")]
    assert hosts == ["cxone.niceincontact.com", "api-na1.niceincontact.com"]


def test_secrets_resolve_at_use_time_and_never_show_in_repr_or_dict(monkeypatch):
    canary = "CANARY-targets-5f1e"
    target = Target(name="g", platform="genesys", region="us_east_1", client_id="id", client_secret_env="G_SECRET")
    with pytest.raises(TargetConfigError) as info:
        target.client_secret({})
    assert "G_SECRET" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setenv("G_SECRET", canary)
    secret = target.client_secret()
    assert secret.reveal() == canary
    for shown in (repr(secret), str(secret), f"{secret}", repr(target), str(target.to_dict())):
        assert canary not in shown
    with pytest.raises(TypeError):
        import pickle
        pickle.dumps(Secret(canary))


def test_the_constructor_validates_plain_values_as_blocks_will_pass_them():
    with pytest.raises(TargetConfigError, match="unknown genesys region 'mars'"):
        Target(name="g", platform="genesys", region="mars", client_id="id", client_secret_env="S")
    target = Target(name="g", platform="genesys", region="us_east_1", client_id="id", client_secret_env="S",
                    endpoints=["/api/v2/tokens/me"], resolve=["a.b:443:127.0.0.1"])  # type: ignore[arg-type]
    assert target.endpoints == ("/api/v2/tokens/me",) and target.resolve == ("a.b:443:127.0.0.1",)
    assert parse_targets({"target": [target.to_dict()]}).targets[0] == target


def test_tenant_id_is_read_from_the_id_token_payload():
    import base64
    import json
    payload = base64.urlsafe_b64encode(json.dumps({"tenantId": "t-1"}).encode()).rstrip(b"=").decode()
    assert tenant_id_from_id_token(f"e30.{payload}.sig") == "t-1"
    assert tenant_id_from_id_token("not-a-jwt") is None
    assert tenant_id_from_id_token("a.!!!.c") is None


def test_the_fake_platforms_targets_toml_loads_and_every_platform_passes(tmp_path):
    with FakePlatform() as fake:
        config = load_targets(fake.write_targets(tmp_path / "targets.toml"))
        assert [t.platform for t in config.targets] == ["genesys", "nice", "generic"]

        async def run_all():
            return [await run_http_checks(t, env=fake.env(), clock=FakeClock()) for t in config.targets]

        for checks in asyncio.run(run_all()):
            assert checks.ok, checks.to_dict()
            assert all(e.protocol == "TLSv1.3" and e.cipher for e in checks.endpoints)


@pytest.mark.parametrize("pin", ["sha256/not-a-pin!!", "sha256/AAAA", "md5/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="])
def test_one_pin_rule_for_the_file_the_blocks_and_the_command_line(tmp_path, pin, capsys):
    """A pin `diagnose --pin` refuses is refused by targets.toml and by a block too, with the same reason."""
    from pydantic import ValidationError

    from cxhealth.blocks import CxTLSPolicy
    from cxhealth.cli.main import main

    with pytest.raises(TargetConfigError) as from_file:
        load_targets(one_target(tmp_path, GENESYS + f'pins = ["{pin}"]\n'))
    with pytest.raises(ValidationError) as from_block:
        CxTLSPolicy(pins=[pin])
    assert main(["diagnose", "example.com", "--pin", pin]) == 2
    from_cli = capsys.readouterr().err
    reason = from_cli.removeprefix("error: --pin ").strip()
    assert reason and reason in str(from_file.value) and reason in str(from_block.value)
    good = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert load_targets(one_target(tmp_path, GENESYS + f'pins = ["{good}"]\n')).targets[0].pins == (good,)


def test_every_slack_key_the_alerter_supports_is_accepted_by_the_loader(tmp_path):
    from cxhealth.tasks.alerts.run import alert_settings

    config = load_targets(write(tmp_path, f'[[target]]\n{GENESYS}\n[slack]\nwebhook_url_env = "HOOK"\n'
                                          f'rate_limit_budget_s = 5\nmax_rate_limit_retries = 1\nlease_s = 60\n'
                                          f'message_budget_chars = 4000\nattach_full_json = false\ntimeout = 2\n'))
    settings = alert_settings(config, {"HOOK": "https://hooks.slack.com/services/T/B/x"})
    assert (settings.rate_limit_budget_s, settings.max_rate_limit_retries, settings.lease_s,
            settings.message_budget_chars, settings.attach_full_json, settings.timeout_s) == (5.0, 1, 60.0, 4000,
                                                                                            False, 2.0)
    with pytest.raises(TargetConfigError, match=r"\[slack\]: rate_limit_budget_s: must be a number >= 0"):
        load_targets(write(tmp_path, f'[[target]]\n{GENESYS}\n[slack]\nwebhook_url_env = "HOOK"\n'
                                     f'rate_limit_budget_s = -1\n'))


def test_a_key_in_defaults_is_checked_by_the_same_rule_and_named_as_in_defaults(tmp_path):
    with pytest.raises(TargetConfigError, match=r"\[defaults\]: timeout: must be a positive number"):
        load_targets(one_target(tmp_path, GENESYS, defaults="timeout = 0"))


@pytest.mark.parametrize("entry", ["login.example:443", "login.example:443:not-an-ip", "login.example:0:127.0.0.1",
                                   "login.example:443:" + ",".join(f"127.0.0.{i}" for i in range(1, 10))])
def test_one_resolve_rule_for_the_file_and_the_command_line(tmp_path, entry, capsys):
    from cxhealth.cli.main import main

    with pytest.raises(TargetConfigError) as from_file:
        load_targets(one_target(tmp_path, GENESYS + f'resolve = ["{entry}"]\n'))
    assert main(["diagnose", "example.com", "--resolve", entry]) == 2
    reason = capsys.readouterr().err.removeprefix("error: --resolve ").strip()
    assert reason and reason in str(from_file.value)
