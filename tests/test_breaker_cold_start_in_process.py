"""A cold start of many targets in ONE process (one event loop) sharing a host: the waiting for a
cold-start slot must not hold the loop's worker threads, which the slot holders need to record
their result (found by bench/bench_run_scale.py: 300 targets stalled on Breaker.admit)."""

from __future__ import annotations

import asyncio

from cxhealth.tasks.breaker import BreakerConfig, open_breaker


def test_forty_checks_of_one_cold_host_in_one_loop_all_get_through_once_the_first_succeeds(tmp_path):
    # Given a closed breaker and a long lease (a stall would last until the lease ends: the test's timeout)
    breaker = open_breaker(f"sqlite:///{tmp_path / 'b.sqlite3'}", BreakerConfig(lease_s=600, wait_poll_s=0.01))
    host = "api.cold.example.test"

    async def check(i: int) -> bool:
        decision = await breaker.admit_async(host)
        if decision.admitted:
            await asyncio.sleep(0.01)  # the handshake
            await asyncio.to_thread(breaker.record_success, host, decision)
        return decision.admitted

    async def run_all() -> list[bool]:
        return await asyncio.gather(*(check(i) for i in range(40)))

    # When 40 checks start at once (far more than the loop's default pool of threads)
    admitted = asyncio.run(asyncio.wait_for(run_all(), timeout=120))

    # Then every one of them was let through: none timed out waiting for a slot
    assert admitted == [True] * 40
