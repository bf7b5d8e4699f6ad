"""A long-running, threaded server over one home: config changes by two processes both survive,
what one process changes (catalogue, model, settings) the other sees on its next call, and many
threads reading while live events and index updates write get consistent answers."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pandas as pd
import pytest

from stylesense.catalog.store import Upsert
from stylesense.concurrency import ReadWriteLock
from stylesense.engine import StyleSense

N_ITEMS = 40


def _home(root) -> StyleSense:
    """A catalogue straight into the store (no CNN), an index, and a purchase log."""
    ss = StyleSense(root, threads=1)
    feats = np.random.default_rng(0).standard_normal((N_ITEMS, 16)).astype(np.float32)
    ss.store.upsert([Upsert(f"p{i}", {"articleType": "Bags"}, None, f"h{i}", feats[i]) for i in range(N_ITEMS)])
    ss.sync_index()
    rows = [(f"u{u}", f"p{(u * 7 + j) % N_ITEMS}", "purchase", pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=u * 5 + j))
            for u in range(30) for j in range(4)]
    ss.behaviour.events.import_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"]))
    return ss


def _add_type(root: str, name: str) -> None:
    StyleSense(root).behaviour.set_weights({name: 2.0}, new_type=True)


def test_config_changes_of_concurrent_processes_all_survive(tmp_path):
    root = str(tmp_path / "home")
    StyleSense(root)
    names = [f"type{i}" for i in range(8)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_type, args=(root, n)) for n in names]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert set(names) <= set(StyleSense(root).behaviour.weights)  # read-modify-write lost none


def test_what_another_process_changes_is_seen_on_the_next_call(tmp_path):
    server = _home(tmp_path / "home")
    server.behaviour.train("popular")
    first = server.search(item="p1", k=5)
    assert server.behaviour.recommend("nobody", 3)

    other = StyleSense(tmp_path / "home")  # another worker or the CLI: its own objects, same files
    other.set_hidden([first[0].item_id])
    other.behaviour.train("itemknn", {"threads": 1})
    other.configure({"exclude_seen": "false"})

    assert first[0].item_id not in {h.item_id for h in server.search(item="p1", k=5)}  # index re-read
    assert server.config.recommender == "itemknn" and server.config.exclude_seen is False
    assert type(server.behaviour.model()).__name__ == "ItemKNN"  # the new default model, loaded


def test_concurrent_requests_fold_in_a_live_event_once(tmp_path):
    ss = _home(tmp_path / "home")
    ss.behaviour.train("itemknn", {"threads": 1})
    fresh = StyleSense(tmp_path / "home")  # a server that loads the model on its first request
    fresh.behaviour.add_event("u1", "p39", "view")
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            fresh.behaviour.recommend("u1", 5)
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    model = fresh.behaviour.model()
    row = model.history[model.user_index["u1"]]
    view = list(model.item_ids).index("p39")
    assert row[0, view] == pytest.approx(1.0)  # one view's weight: folded in once, not eight times


def test_searches_stay_consistent_while_the_catalogue_changes(tmp_path):
    ss = _home(tmp_path / "home")
    stop = threading.Event()
    errors: list[BaseException] = []
    sizes: list[int] = []

    def search() -> None:
        while not stop.is_set():
            try:
                hits = ss.search(item="p0", k=10)
                sizes.append(len(hits))
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
                return

    readers = [threading.Thread(target=search) for _ in range(4)]
    for t in readers:
        t.start()
    for round_ in range(15):  # hide and show items, as a back office would during traffic
        ss.set_hidden([f"p{1 + round_ % 30}"], True)
        ss.set_hidden([f"p{1 + round_ % 30}"], False)
    stop.set()
    for t in readers:
        t.join()
    assert not errors and sizes and set(sizes) == {10}
    assert len(ss.index()) == N_ITEMS and not ss.store.index_behind()


def test_a_waiting_writer_holds_back_new_readers():
    lock = ReadWriteLock()
    order: list[str] = []
    reading = threading.Event()

    def reader(name: str, hold: threading.Event | None) -> None:
        with lock.reading():
            order.append(f"{name} in")
            if hold is not None:
                reading.set()
                hold.wait(5)

    def writer() -> None:
        with lock.writing():
            order.append("writer")

    release = threading.Event()
    first = threading.Thread(target=reader, args=("r1", release))
    first.start()
    reading.wait(5)
    w = threading.Thread(target=writer)
    w.start()
    while not lock._writers_waiting:  # the writer is queued behind r1
        pass
    late = threading.Thread(target=reader, args=("r2", None))
    late.start()
    release.set()
    for t in (first, w, late):
        t.join(5)
    assert order == ["r1 in", "writer", "r2 in"]
