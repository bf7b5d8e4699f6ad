"""The API as a shop runs it: `stylesense serve` in a subprocess on 127.0.0.1 with two workers,
called over real sockets. Durability (SIGKILL mid-stream loses no acknowledged event and
stores none twice), concurrency (8 writers and 8 readers: no errors, no lost or doubled
events) and schemathesis against /openapi.json (no 5xx, responses match the schema).

Select them with ``-m server``; they run in ``make test`` too.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from stylesense.engine import StyleSense
from stylesense.serving.process import ServerProcess

pytestmark = pytest.mark.server

EXE = Path(sys.executable).with_name("stylesense")
STARTUP_S = 60.0  # two workers importing the app on a busy 2-core machine
STREAMED = 5000  # events the durability test sends one by one
RESENT = 50  # the last events before the crash, sent again after the restart
CONCURRENT_S = float(os.environ.get("STYLESENSE_API_CONCURRENCY_SECONDS", "20"))
SCHEMA_EXAMPLES = int(os.environ.get("STYLESENSE_API_SCHEMA_EXAMPLES", "10"))  # per operation, valid and invalid each
ITEMS = [str(i) for i in range(1, 25)]  # the test catalogue's ids (conftest.write_catalog)


@pytest.fixture
def write_key(home_copy: Path) -> str:
    """A write key for the home, made by the CLI as an operator would."""
    done = subprocess.run([str(EXE), "--home", str(home_copy), "keys", "create", "--role", "write"],
                          capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.strip()


@pytest.fixture
def server(home_copy: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """A running server over a private copy of the test home; killed however the test ends."""
    live = ServerProcess(home_copy, tmp_path / "server.log")
    try:
        live.start(timeout=STARTUP_S)
        yield live
    finally:
        live.kill()


def test_the_workers_answer_keep_alive_requests_without_a_delayed_ack_wait(server: ServerProcess, write_key: str) -> None:
    """With several workers uvicorn's listening socket left Nagle's algorithm on, and each
    keep-alive answer waited ~40 ms for the client's delayed ACK (see server.NoDelayHTTP)."""
    with httpx.Client(base_url=server.url, headers={"X-API-Key": write_key}) as c:
        assert c.get("/ready").json()["ready"] is True
        r = c.get("/v1/users/alice/recommendations", params={"k": 3})
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        seconds = []
        for _ in range(30):
            start = time.perf_counter()
            assert c.get("/health").status_code == 200
            seconds.append(time.perf_counter() - start)
    assert statistics.median(seconds) < 0.02
    assert httpx.get(f"{server.url}/v1/users/alice/recommendations").status_code == 401


def test_a_keep_alive_connection_is_closed_after_its_hundredth_answer_and_the_client_carries_on(
        server: ServerProcess, write_key: str) -> None:
    """Workers keep the connections they accept; a bound on requests per connection makes
    clients reconnect now and then, so connections drift to the worker with spare time
    (server.MAX_REQUESTS_PER_CONNECTION). Nothing is lost: the client opens a new one."""
    from stylesense.serving.server import MAX_REQUESTS_PER_CONNECTION as N

    with httpx.Client(base_url=server.url, headers={"X-API-Key": write_key}) as c:
        answers = [c.get("/health") for _ in range(2 * N + 5)]
    assert [r.status_code for r in answers] == [200] * (2 * N + 5)
    closing = [i + 1 for i, r in enumerate(answers) if r.headers.get("connection") == "close"]
    assert closing == [N, 2 * N]


def test_a_backed_up_worker_asks_long_lived_connections_to_reconnect_and_the_clients_carry_on(
        server: ServerProcess, write_key: str) -> None:
    """Connections opened in a burst can all land on one worker, which then queues every
    request while the other idles. A worker with more than REBALANCE_IN_FLIGHT requests in
    flight answers a connection that has served REBALANCE_MIN_REQUESTS with `Connection: close`,
    so its client reconnects, likelier to the idle worker. Unhurried requests keep their
    connection; every request of a burst is answered."""
    from stylesense.serving.server import REBALANCE_IN_FLIGHT, REBALANCE_MIN_REQUESTS

    clients = [httpx.Client(base_url=server.url, headers={"X-API-Key": write_key}) for _ in range(4 * REBALANCE_IN_FLIGHT)]
    try:
        warm = [c.get("/v1/users/alice/recommendations") for c in clients for _ in range(REBALANCE_MIN_REQUESTS)]
        assert {r.status_code for r in warm} == {200}
        assert not [r for r in warm if r.headers.get("connection") == "close"]  # one at a time: never backed up
        closed: list[int] = []
        for _ in range(5):  # bursts of one request per connection, all sent at once
            start = threading.Barrier(len(clients))

            def burst(c: httpx.Client) -> httpx.Response:
                start.wait()
                return c.post("/v1/search", json={"item_id": ITEMS[0], "k": 10})

            answers: list[httpx.Response] = [None] * len(clients)  # type: ignore[list-item]
            threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, burst(clients[i])))
                       for i in range(len(clients))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert [r.status_code for r in answers] == [200] * len(clients)
            closed.append(sum(r.headers.get("connection") == "close" for r in answers))
        assert sum(closed) > 0, closed
        after = [c.get("/v1/users/alice/recommendations").status_code for c in clients]  # reconnected
        assert after == [200] * len(clients)
    finally:
        for c in clients:
            c.close()


def test_a_key_revoked_by_the_cli_is_refused_by_every_worker_on_its_next_request(server: ServerProcess, write_key: str) -> None:
    """Each worker remembers the keys it has checked (serving.keys); a revocation made by
    another process still counts from the next request on, in every worker. Every request
    opens a connection of its own, so both workers answer some of each round."""
    path = "/v1/users/alice/recommendations"
    before = [httpx.get(f"{server.url}{path}", headers={"X-API-Key": write_key}).status_code for _ in range(30)]
    assert before == [200] * 30
    subprocess.run([str(EXE), "--home", str(server.home), "keys", "revoke", write_key.split("_")[1]],
                   check=True, capture_output=True, timeout=60)
    after = [httpx.get(f"{server.url}{path}", headers={"X-API-Key": write_key}).status_code for _ in range(30)]
    assert after == [401] * 30


def stored(home: Path, prefix: str) -> Counter[str]:
    """How many times each event id starting with ``prefix`` is in the database, read through
    the library by a process of its own (the test's), as the CLI would."""
    events = StyleSense(home).behaviour.events.events()
    return Counter(e.event_id for e in events if e.event_id and e.event_id.startswith(prefix))


def wait_for(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.001)


def test_a_killed_server_loses_no_acknowledged_event_and_stores_none_twice(server: ServerProcess, write_key: str) -> None:
    """Events one by one, each acknowledged only after its commit; SIGKILL (every process of
    the server at once) part-way; a restart; the last RESENT events before the crash sent
    again, the unacknowledged one included, then the rest. Every event is stored exactly
    once, and the counts the server reported add up to that."""

    def event(i: int) -> dict[str, str]:  # no time: the server stamps it, so only the id dedupes
        return {"user_id": f"dur{i % 50}", "item_id": ITEMS[i % len(ITEMS)], "type": "view", "event_id": f"dur-{i}"}

    acked: list[int] = []
    kill_at = STREAMED // 3
    killer = threading.Thread(target=lambda: (wait_for(lambda: len(acked) >= kill_at), server.kill()), daemon=True)
    killer.start()
    crashed_at = None
    with httpx.Client(base_url=server.url, headers={"X-API-Key": write_key}, timeout=30) as c:
        for i in range(STREAMED):
            try:
                r = c.post("/v1/events", json=event(i))
            except httpx.TransportError:
                crashed_at = i
                break
            assert r.status_code == 200, r.text
            assert r.json() == {"inserted": 1, "duplicates": 0}
            acked.append(i)
    killer.join()
    assert crashed_at is not None, "the server was not killed mid-stream"
    assert stored(server.home, "dur-").keys() >= {f"dur-{i}" for i in acked}  # before any resend

    server.start(timeout=STARTUP_S)
    again = {"inserted": 0, "duplicates": 0}
    with httpx.Client(base_url=server.url, headers={"X-API-Key": write_key}, timeout=30) as c:
        for i in range(max(0, crashed_at - RESENT), STREAMED):
            r = c.post("/v1/events", json=event(i))
            assert r.status_code == 200, r.text
            for key in again:
                again[key] += r.json()[key]
            if i < crashed_at:
                assert r.json() == {"inserted": 0, "duplicates": 1}  # acknowledged before: not again

    counts = stored(server.home, "dur-")
    assert len(counts) == STREAMED and set(counts.values()) == {1}, "lost or doubled events"
    in_flight_committed = STREAMED - len(acked) - again["inserted"]  # committed, its answer lost in the crash
    assert in_flight_committed in (0, 1)
    assert again["duplicates"] == min(RESENT, crashed_at) + in_flight_committed
    print(f"\ndurability: {len(acked)} acknowledged before SIGKILL at event {crashed_at} "
          f"(in flight and committed: {in_flight_committed}); {STREAMED - crashed_at + min(RESENT, crashed_at)} "
          f"sent after the restart, {again['duplicates']} recognised as stored; {len(counts)} stored, each once")


def test_concurrent_writers_and_readers_see_no_errors_and_lose_no_events(server: ServerProcess, write_key: str) -> None:
    """8 writer and 8 reader clients, each its own keep-alive connection, for CONCURRENT_S:
    every request answers 2xx (a 5xx, "database is locked" included, fails), every event
    a writer had acknowledged is stored once, and reads keep answering while the writes go on."""
    deadline = time.monotonic() + CONCURRENT_S
    problems: list[str] = []
    written: dict[int, int] = {}  # writer -> events acknowledged
    read_ms: dict[int, list[float]] = {k: [] for k in range(8)}  # reader -> its answers' latencies

    def writer(w: int) -> None:
        sent = 0
        with httpx.Client(base_url=server.url, headers={"X-API-Key": write_key}, timeout=30) as c:
            n = 0
            while time.monotonic() < deadline and not problems:
                size = 10 if n % 5 == 4 else 1  # mostly single events, some batches
                batch = [{"user_id": f"cw{w}-{(sent + j) % 5}", "item_id": ITEMS[(sent + j) % len(ITEMS)],
                          "type": "view", "event_id": f"cw{w}-{sent + j}"} for j in range(size)]
                try:
                    r = c.post("/v1/events", json=batch if size > 1 else batch[0])
                except httpx.HTTPError as e:
                    problems.append(f"writer {w}: {type(e).__name__}: {e}")
                    break
                if r.status_code != 200 or r.json() != {"inserted": size, "duplicates": 0}:
                    problems.append(f"writer {w}: {r.status_code} {r.text[:300]}")
                    break
                sent += size
                n += 1
        written[w] = sent

    def reader(k: int) -> None:
        calls = [
            lambda c, n: c.get(f"/v1/users/cw{n % 8}-{n % 5}/recommendations", params={"k": 5}),
            lambda c, n: c.get(f"/v1/users/cw{n % 8}-{n % 5}/events", params={"limit": 20}),
            lambda c, n: c.post("/v1/search", json={"item_id": ITEMS[n % len(ITEMS)], "k": 5}),
            lambda c, n: c.get(f"/v1/items/{ITEMS[n % len(ITEMS)]}"),
            lambda c, n: c.get("/v1/users/alice/recommendations", params={"k": 5}),
        ]
        with httpx.Client(base_url=server.url, headers={"X-API-Key": write_key}, timeout=30) as c:
            n = k
            while time.monotonic() < deadline and not problems:
                start = time.perf_counter()
                try:
                    r = calls[n % len(calls)](c, n)
                except httpx.HTTPError as e:
                    problems.append(f"reader {k}: {type(e).__name__}: {e}")
                    break
                read_ms[k].append((time.perf_counter() - start) * 1e3)
                if r.status_code != 200:
                    problems.append(f"reader {k}: {r.request.method} {r.request.url.path} -> {r.status_code} {r.text[:300]}")
                    break
                n += 1

    clients = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    clients += [threading.Thread(target=reader, args=(k,)) for k in range(8)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(CONCURRENT_S + 120)
    assert not problems, problems[:5]
    assert "database is locked" not in server.tail(1 << 20)

    counts = stored(server.home, "cw")
    assert set(counts.values()) <= {1}, "an event was stored twice"
    assert len(written) == 8
    for w, sent in written.items():
        assert sum(1 for e in counts if e.startswith(f"cw{w}-")) == sent, f"writer {w}: events lost"
    for k, answers in read_ms.items():  # none starved while the writes went on
        assert len(answers) >= CONCURRENT_S / 2, f"reader {k}: {len(answers)} answers in {CONCURRENT_S:g} s"
    every = [ms for answers in read_ms.values() for ms in answers]
    q = statistics.quantiles(every, n=100)
    print(f"\nconcurrency, {CONCURRENT_S:g} s: {sum(written.values())} events by 8 writers, all stored once; "
          f"{len(every)} reads by 8 readers, p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {max(every):.0f} ms")


def test_concurrent_gorse_writers_and_readers_lose_and_double_no_feedback(server: ServerProcess, write_key: str) -> None:
    """The same through the Gorse routes for half as long: 3 writers POST feedback one at a time
    (every 7th sent twice, as a client retrying after a timeout would), 1 overwrites 4
    feedbacks again and again with PUT, 4 readers call recommend, feedback lists, popular,
    latest and neighbours. Every request answers 200; every acknowledged feedback is stored
    once, retries included; each overwritten one is there once, with the last value acknowledged."""
    from datetime import datetime, timedelta, timezone

    seconds = CONCURRENT_S / 2
    deadline = time.monotonic() + seconds
    problems: list[str] = []
    posted: dict[int, set[tuple[str, str, str]]] = {}  # writer -> (user, item, time) acknowledged
    overwritten: dict[tuple[str, str], float] = {}  # (user, item) -> the value of its last acknowledged PUT
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)

    def send(c: httpx.Client, who: str, method: str, body: list[dict]) -> bool:
        try:
            r = c.request(method, "/api/feedback", json=body)
        except httpx.HTTPError as e:
            problems.append(f"{who}: {type(e).__name__}: {e}")
            return False
        if r.status_code != 200 or r.json() != {"RowAffected": len(body)}:
            problems.append(f"{who}: {method} {r.status_code} {r.text[:300]}")
            return False
        return True

    def poster(w: int) -> None:
        acked: set[tuple[str, str, str]] = set()
        with httpx.Client(base_url=server.url, headers={"X-API-Key": write_key}, timeout=30) as c:
            n = 0
            while time.monotonic() < deadline and not problems:
                when = (start + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")
                key = (f"gw{w}-{n % 5}", ITEMS[n % len(ITEMS)], when)
                feedback = {"FeedbackType": "star", "UserId": key[0], "ItemId": key[1], "Timestamp": when}
                if not send(c, f"writer {w}", "POST", [feedback]):
                    break
                acked.add(key)
                if n % 7 == 6 and not send(c, f"writer {w}", "POST", [feedback]):  # a retry
                    break
                n += 1
        posted[w] = acked

    def overwriter() -> None:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": write_key}, timeout=30) as c:
            n = 0
            while time.monotonic() < deadline and not problems:
                key = (f"gput-{n % 2}", ITEMS[n % 4])
                feedback = {"FeedbackType": "star", "UserId": key[0], "ItemId": key[1], "Value": n,
                            "Timestamp": (start + timedelta(seconds=n)).isoformat()}
                if not send(c, "overwriter", "PUT", [feedback]):
                    break
                overwritten[key] = float(n)
                n += 1

    def reader(k: int) -> None:
        calls = [
            lambda c, n: c.get(f"/api/recommend/gw{n % 3}-{n % 5}", params={"n": 5}),
            lambda c, n: c.get(f"/api/user/gw{n % 3}-{n % 5}/feedback"),
            lambda c, n: c.get("/api/popular", params={"n": 5}),
            lambda c, n: c.get("/api/latest", params={"n": 5}),
            lambda c, n: c.get(f"/api/item/{ITEMS[n % len(ITEMS)]}/neighbors", params={"n": 5}),
            lambda c, n: c.get("/api/user/alice/neighbors", params={"n": 5}),
            lambda c, n: c.get("/api/feedback", params={"n": 20}),
        ]
        with httpx.Client(base_url=server.url, headers={"X-API-Key": write_key}, timeout=30) as c:
            n = k
            while time.monotonic() < deadline and not problems:
                try:
                    r = calls[n % len(calls)](c, n)
                except httpx.HTTPError as e:
                    problems.append(f"reader {k}: {type(e).__name__}: {e}")
                    break
                if r.status_code != 200:
                    problems.append(f"reader {k}: {r.request.method} {r.request.url.path} -> {r.status_code} {r.text[:300]}")
                    break
                n += 1

    clients = [threading.Thread(target=poster, args=(w,)) for w in range(3)] + [threading.Thread(target=overwriter)]
    clients += [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(seconds + 120)
    assert not problems, problems[:5]
    assert "database is locked" not in server.tail(1 << 20)

    events = StyleSense(server.home).behaviour.events.events()
    stars = Counter((e.user_id, e.item_id, e.ts.isoformat().replace("+00:00", "Z")) for e in events
                    if e.user_id.startswith("gw"))
    assert set(stars.values()) == {1}, "a feedback was stored twice"
    assert set(stars) == set().union(*posted.values()), "acknowledged feedback lost"
    kept = {(e.user_id, e.item_id): e.value for e in events if e.user_id.startswith("gput")}
    assert sum(e.user_id.startswith("gput") for e in events) == len(kept) and kept == overwritten
    print(f"\ngorse concurrency, {seconds:g} s: {len(stars)} feedbacks by 3 writers, each stored once; "
          f"{len(overwritten)} overwritten in place {int(max(overwritten.values(), default=-1)) + 1} times in all")


def test_every_route_answers_within_its_openapi_schema(server: ServerProcess, write_key: str) -> None:
    """schemathesis over every operation of /openapi.json, with a write key (admin-only routes
    answer 403 and are checked for that), SCHEMA_EXAMPLES valid and as many invalid inputs
    each: no 5xx, and status, content type, headers and body as the schema documents; invalid
    input is refused with a 4xx. Every failure is collected, then reported together."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"X-API-Key": write_key}
    conformance = [not_a_server_error, openapi_checks.status_code_conformance,
                   openapi_checks.content_type_conformance, openapi_checks.response_headers_conformance,
                   openapi_checks.response_schema_conformance]
    modes = {GenerationMode.POSITIVE: conformance,
             GenerationMode.NEGATIVE: [*conformance, openapi_checks.negative_data_rejection]}
    ran: Counter[str] = Counter()
    failures: dict[tuple[str, str], str] = {}  # (operation, check) -> the first case and answer
    with httpx.Client() as probe:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode, checks in modes.items():

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=SCHEMA_EXAMPLES, deadline=None, database=None, derandomize=True,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
                def run(case) -> None:
                    ran[operation.label] += 1
                    try:
                        case.call_and_validate(headers=headers, checks=checks, timeout=60)
                    except (FailureGroup, Failure) as e:
                        found = e.exceptions if isinstance(e, FailureGroup) else [e]
                        for failure in found:
                            failures.setdefault((operation.label, failure.title), f"{case.as_curl_command(headers)}\n"
                                                f"{failure.message[:600]}")

                try:
                    run()
                except Unsatisfiable:  # nothing to make invalid: no parameters, no body
                    assert mode is GenerationMode.NEGATIVE
            assert probe.get(f"{server.url}/health").status_code == 200  # still up
    assert "unhandled error" not in server.tail(1 << 22)
    report = "\n\n".join(f"{op}: {check}\n{detail}" for (op, check), detail in failures.items())
    print(f"\nschemathesis: {sum(ran.values())} cases over {len(ran)} operations, {len(failures)} failures")
    assert not failures, report
