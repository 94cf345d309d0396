"""The bound on concurrent connections per host (issue 16): shared by a run's targets, per host."""

from __future__ import annotations

import asyncio

from cxhealth.tasks.hostlimit import HostLimiter, limiter


def test_no_more_than_the_bound_are_in_flight_to_one_host_while_other_hosts_are_not_held_back():
    async def go() -> tuple[dict, list[str]]:
        lim = HostLimiter(default=3)
        order: list[str] = []
        release = asyncio.Event()

        async def use(host: str) -> None:
            async with lim.slot(host, 443):
                order.append(host)
                await release.wait()

        tasks = [asyncio.create_task(use("api.example.test")) for _ in range(10)]
        tasks.append(asyncio.create_task(use("login.example.test")))
        for _ in range(5):
            await asyncio.sleep(0)
        started = list(order)
        release.set()
        await asyncio.gather(*tasks)
        return lim.peak, started

    peak, started = asyncio.run(go())
    assert peak[("api.example.test", 443)] == 3
    assert started.count("api.example.test") == 3 and "login.example.test" in started


def test_a_host_keeps_the_bound_of_its_first_use_and_names_are_case_insensitive():
    async def go() -> dict:
        lim = HostLimiter(default=8)
        async with lim.slot("API.example.test.", 443, bound=2):
            pass
        async with lim.slot("api.example.test", 443, bound=50):
            pass
        return lim.bounds

    assert asyncio.run(go()) == {("api.example.test", 443): 2}


def test_every_target_in_one_event_loop_shares_one_limiter_and_a_new_run_starts_fresh():
    async def same() -> bool:
        return limiter() is limiter()

    first = asyncio.run(asyncio.sleep(0, result=None)) or None  # a loop that never used it
    assert asyncio.run(same()) and first is None
    a = asyncio.run(_get())
    b = asyncio.run(_get())
    assert a is not b


async def _get() -> HostLimiter:
    return limiter()


def test_a_run_of_many_targets_on_a_few_lab_hosts_is_healthy_and_never_exceeds_the_bound_per_host(tmp_path):
    """Given 120 targets spread over 3 lab hosts (token host = API host), when `cxhealth run`'s
    orchestration checks them at once, then every target is healthy and no host ever had more
    than the bound of connections in flight (the lab counts no failed handshake)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from bench_run_scale import write_targets

    from cxhealth.lab.fake_platform import FakePlatform, partner_api_host
    from cxhealth.tasks.health import check_targets
    from cxhealth.tasks.hostlimit import DEFAULT_PER_HOST
    from cxhealth.tasks.runtime import breaker_for
    from cxhealth.tasks.targets import load_targets

    with FakePlatform(partner_hosts=3) as fake:
        path = tmp_path / "targets.toml"
        write_targets(path, fake, 120, 3, tmp_path)
        config = load_targets(path)
        env = {"LAB_PARTNER_SECRET": fake.credentials.partner_client_secret}

        async def run() -> tuple[list, dict]:
            breaker = breaker_for(config)
            try:
                reports = await check_targets(list(config.targets), breaker, env)
            finally:
                breaker.close()
            return reports, dict(limiter().peak)

        reports, peak = asyncio.run(run())
        assert [r.healthy for r in reports].count(True) == 120, [r.to_dict()["stage"] for r in reports if not r.healthy][:5]
        hosts = {(partner_api_host(i), fake.port) for i in (1, 2, 3)}
        assert set(peak) == hosts
        assert all(1 <= n <= DEFAULT_PER_HOST for n in peak.values()), peak
        assert fake.handshake_failures == []
