"""An import killed mid-embedding keeps the photos already embedded (committed in chunks), so
the next import embeds only the rest and leaves a consistent home."""

import signal
import subprocess
import sys

import stylesense.engine as engine
from stylesense.doctor import check
from stylesense.engine import StyleSense

from conftest import write_catalog

# Imports in chunks of 8 and parks once 24 photos are embedded (two chunks committed, the
# third embedded but not yet stored), so the parent's SIGKILL lands mid-import every time.
CHILD = """
import sys, time
import stylesense.engine as engine
engine.EMBED_CHUNK = 8

def progress(done, total):
    print(done, total, flush=True)
    if done >= 24:
        time.sleep(600)

engine.StyleSense(sys.argv[1], threads=1).import_catalog(sys.argv[2], "images/{id}.jpg", progress=progress)
print("finished", flush=True)
"""


def test_a_sigkilled_import_resumes_where_it_stopped(home, tmp_path):
    csv_path = write_catalog(tmp_path / "shop", n_per_class=10)  # 40 photos
    StyleSense(home).embedder  # the ONNX export, outside the child's clock
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(home), str(csv_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:
            if int(line.split()[0]) >= 24:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    ss = StyleSense(home, threads=1)
    kept = ss.store.count()
    assert kept == 16 and not ss.home.index_path.exists()  # two chunks survived the kill

    report = ss.import_catalog(csv_path, "images/{id}.jpg")
    assert (report.embedded, report.added, report.unchanged, report.bad) == (40 - kept, 40 - kept, kept, [])
    assert len(ss.index()) == 40 and len(ss.search(item="1", k=5)) == 5
    assert all(f.ok for f in check(home))


def test_chunked_import_reports_counts_and_bad_photos_across_chunks(home, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "EMBED_CHUNK", 3)
    shop = tmp_path / "shop"
    csv_path = write_catalog(shop, n_per_class=3)  # 12 photos, chunks of 3
    (shop / "images" / "5.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    ticks = []
    report = StyleSense(home, threads=1).import_catalog(csv_path, "images/{id}.jpg",
                                                        progress=lambda done, total: ticks.append((done, total)))
    assert (report.added, report.embedded, [b.item_id for b in report.bad]) == (11, 11, ["5"])
    assert ticks[-1] == (12, 12) and len(ticks) == 4
    assert len(StyleSense(home).index()) == 11
