"""Atomic saves: a writer killed at any moment leaves a loadable index and no lasting debris."""

import json
import signal
import subprocess
import sys
import time

import faiss
import numpy as np
import pytest

from stylesense.errors import Damaged
from stylesense.index import load_index, make_index
from stylesense.index.synthetic import clustered_unit_vectors

faiss.omp_set_num_threads(2)

# Saves two ~50 MB indexes (ids 0.. and 10^6..) to one path in turns, forever.
WRITER = """
import sys, numpy as np, faiss
faiss.omp_set_num_threads(1)
from stylesense.index import make_index
n, dim = 200_000, 64
x = np.random.default_rng(0).standard_normal((n, dim), dtype=np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
a, b = make_index("flat", dim), make_index("flat", dim)
a.build(np.arange(n), x)
b.build(np.arange(n) + 1_000_000, x)
print("ready", flush=True)
while True:
    for index in (a, b):
        index.save(sys.argv[1])
"""


def stray_temps(path):
    return list(path.parent.glob(f".{path.name}.*.tmp"))


def test_sigkill_mid_save_leaves_a_loadable_index(tmp_path):
    path = tmp_path / "catalogue.idx"
    rng = np.random.default_rng(0)
    killed_mid_write = 0
    for round_ in range(10):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "ready"
        if round_ == 0:  # the very first file must exist before a kill can be judged
            while not path.exists():
                time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.6))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        killed_mid_write += bool(stray_temps(path))
        index = load_index(path)  # the previous or the new file, never a torn one
        assert len(index) == 200_000
        assert (0 in index) != (1_000_000 in index)
        first = 0 if 0 in index else 1_000_000
        assert index.search(index.vectors(np.array([first])), 1)[1][0, 0] == first
        if round_ >= 3 and killed_mid_write >= 2:
            break
    assert killed_mid_write >= 1, "no kill landed mid-write: the test did not exercise the crash"

    survivor = load_index(path)
    survivor.save(path)  # the next save works and sweeps the dead writers' temp files
    assert stray_temps(path) == []
    assert len(load_index(path)) == 200_000


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "i.idx"
    x = clustered_unit_vectors(50, 16, n_clusters=3, seed=1)
    index = make_index("hnsw", 16)
    index.build(np.arange(50), x)
    index.save(path)
    before = path.read_bytes()

    def torn_savez(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", torn_savez)
    index.remove(np.arange(10))
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and stray_temps(path) == []
    assert len(load_index(path)) == 50


def test_file_carries_kind_and_dim_and_rejects_unknown_content(tmp_path):
    x = clustered_unit_vectors(30, 8, n_clusters=2, seed=2)
    for kind in ("flat", "kdtree", "ivf", "hnsw"):
        index = make_index(kind, 8)
        index.build(np.arange(30), x)
        index.save(tmp_path / kind)
        loaded = load_index(tmp_path / kind)
        assert (loaded.kind, loaded.dim, len(loaded)) == (kind, 8, 30)
    bogus = tmp_path / "bogus.npz"
    np.savez(bogus, header=np.array(json.dumps({"format": 1, "kind": "annoy", "dim": 8})))
    with pytest.raises(Damaged, match="annoy"):
        load_index(bogus)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, header=np.array([{"kind": "flat"}], dtype=object))
    with pytest.raises(Damaged):
        load_index(pickled)
