"""A worker that ``stylesense serve`` starts freezes what it holds live once the app is made, so
the collector's full passes walk only what requests allocate (the p99 pauses of issue 11), while
a process that only embeds ``create_app`` keeps its collector untouched."""

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import gc, json, sys
from stylesense.serving.{module} import {factory}
before = gc.get_freeze_count()
app = {call}
assert app.openapi()["paths"]
junk = [[i] for i in range(1000)]  # allocated after: must stay collectable
print(json.dumps({{"before": before, "frozen": gc.get_freeze_count()}}))
"""


def probe(home: Path, module: str, factory: str, call: str) -> dict:
    env = {**os.environ, "STYLESENSE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module, factory=factory, call=call)],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_served_worker_freezes_the_objects_it_starts_with(imported_home: Path) -> None:
    found = probe(imported_home, "server", "app_from_env", "app_from_env()")
    assert found["before"] == 0
    assert found["frozen"] > 10_000  # the imports and the home: ~110k on the bench home


def test_an_embedded_app_leaves_the_collector_alone(imported_home: Path) -> None:
    found = probe(imported_home, "app", "create_app", f"create_app({str(imported_home)!r})")
    assert found["frozen"] == 0
