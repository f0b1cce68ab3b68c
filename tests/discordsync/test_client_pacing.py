"""Client pacing against the fake Discord over HTTP: bulk role writes stay inside the route
bucket and the global cap, so Discord never has to answer 429 (each one counts towards the
10,000-per-10-minutes invalid-request ban).

The fake counts every 429 it had to send because a limit was really exceeded ("organic"), as
opposed to the ones a test forces; these tests configure limits through its control API and
read its counters back the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from discordsync.client import DiscordClient, get_client
from tests.personas import ROLE_IDS


def _control(server, method: str, path: str, body: dict | None = None) -> dict:
    response = requests.request(method, f"{server.url}/_control/{path}", json=body, timeout=5)
    response.raise_for_status()
    return response.json()


def _limits(server, *, routes: dict[str, list[float]], global_: list[float]) -> None:
    _control(server, "POST", "rate_limits", {"routes": routes, "global": global_})
    _control(server, "POST", "requests/clear")


def _seed(server, count: int) -> list[str]:
    seeded = _control(server, "POST", "seed_members", {"count": count})
    first = int(seeded["first_id"])
    return [str(first + i) for i in range(count)]


def _rate_limited(server) -> dict[str, int]:
    return _control(server, "GET", "state?members=0")["stats"]["rate_limited"]


def _run_parallel(jobs: list[Callable[[], object]], threads: int) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()
    return time.monotonic() - started


@pytest.fixture
def server(discord, discord_server):
    """The fake, fresh, with settings pointing at it (via `discord`)."""
    return discord_server


def test_sustained_role_writes_wait_for_the_route_bucket_instead_of_429s(server):
    _limits(server, routes={"guild_member_role": [10, 1.0]}, global_=[50, 1.0])
    users = _seed(server, 20)
    client = get_client()
    squire = ROLE_IDS["squire"]
    # Add then remove for each member, four worker threads sharing one client: PUT and
    # DELETE share one bucket on Discord, so the client must count them together.
    jobs: list[Callable[[], object]] = []
    for user in users:
        jobs.append(lambda u=user: client.add_role(u, squire, reason="pacing test"))
    for user in users:
        jobs.append(lambda u=user: client.remove_role(u, squire, reason="pacing test"))

    elapsed = _run_parallel(jobs, threads=4)

    assert _rate_limited(server)["organic"] == 0
    writes = server.state.requests(path_prefix=f"/guilds/{server.state.guild_id}/members/")
    assert [entry["status"] for entry in writes] == [204] * 40
    assert all(server.state.member_roles(user) == [] for user in users)
    # 40 writes at 10 per window need at least four windows: the client really waited.
    assert elapsed >= 3.0


def test_a_route_that_shares_an_exhausted_bucket_waits_on_its_first_request(server):
    _limits(server, routes={"guild_member_role": [3, 1.0]}, global_=[50, 1.0])
    user = _seed(server, 1)[0]
    client = get_client()
    for name in ("squire", "knight", "lord"):
        client.add_role(user, ROLE_IDS[name], reason="pacing test")
    # The client has never seen DELETE, but it shares the PUTs' exhausted bucket.
    client.remove_role(user, ROLE_IDS["squire"], reason="pacing test")

    assert _rate_limited(server)["organic"] == 0
    assert server.state.member_roles(user) == sorted([ROLE_IDS["knight"], ROLE_IDS["lord"]])


def test_global_cap_holds_across_routes(server, settings):
    # Route limits far above the global one: only the client's global cap can keep the
    # fake's global window (20 per second) from answering 429.
    _limits(
        server,
        routes={"guild_member_role": [200, 1.0], "default": [200, 1.0]},
        global_=[20, 1.0],
    )
    settings.DISCORD_GLOBAL_RATE = 15
    users = _seed(server, 20)
    client = get_client()
    jobs: list[Callable[[], object]] = []
    for user in users:
        jobs.append(lambda u=user: client.add_role(u, ROLE_IDS["knight"], reason="pacing test"))
        jobs.append(lambda u=user: client.get_member(u))
        jobs.append(lambda: client.get_guild())

    elapsed = _run_parallel(jobs, threads=4)

    limited = _rate_limited(server)
    assert limited["organic"] == 0 and limited["global"] == 0
    assert all(server.state.member_roles(user) == [ROLE_IDS["knight"]] for user in users)
    # 60 requests at 15/s with a burst of 1.5: at least 3.8 s.
    assert elapsed >= 3.5


def test_global_cap_is_shared_by_every_client_of_the_bot_in_the_process(server, settings):
    _limits(server, routes={"guild_member_role": [200, 1.0]}, global_=[20, 1.0])
    users = _seed(server, 40)
    # Two clients (e.g. reconciliation and a role-sync task in one worker) for one bot.
    clients = [DiscordClient(global_rate=18), DiscordClient(global_rate=18)]
    barrier = threading.Barrier(2)

    def write(client: DiscordClient, batch: list[str]) -> None:
        barrier.wait()
        for user in batch:
            client.add_role(user, ROLE_IDS["lord"], reason="pacing test")

    threads = [
        threading.Thread(target=write, args=(clients[0], users[:20])),
        threading.Thread(target=write, args=(clients[1], users[20:])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert clients[0].global_limiter is clients[1].global_limiter
    assert _rate_limited(server)["global"] == 0
    assert all(server.state.member_roles(user) == [ROLE_IDS["lord"]] for user in users)


def test_a_non_positive_global_rate_is_refused_with_a_clear_error(server, settings):
    settings.DISCORD_GLOBAL_RATE = -1
    with pytest.raises(ValueError, match="DISCORD_GLOBAL_RATE must be positive"):
        get_client()
    assert server.state.requests() == []
