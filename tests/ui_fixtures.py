"""The home the web app's tests run on: the synthetic catalogue (four classes of drawn
products, six each) with shoppers who each keep to one class, and three trained models."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from stylesense.engine import StyleSense

MODELS = ("itemknn", "visual", "popular")


def shop_home(imported_home: Path, root: Path) -> Path:
    """A copy of ``imported_home`` with 20 shoppers (shopper<n> keeps to class n % 4: views,
    carts and purchases at a price) and the three models trained."""
    home = root / "home"
    shutil.copytree(imported_home, home, symlinks=True)
    ss = StyleSense(home, threads=1)
    items = ss.items()
    classes = sorted({it.attrs["articleType"] for it in items})
    rng = random.Random(3)
    for n in range(20):
        own = [it for it in items if it.attrs["articleType"] == classes[n % 4]]
        for it in rng.sample(own, 4):
            ss.behaviour.add_event(f"shopper{n}", it.item_id, rng.choice(["view", "cart", "purchase"]),
                                   price=it.attrs["price"], ts=f"2026-11-{1 + n:02d}T12:00:00")
    for name in MODELS:
        ss.behaviour.train(name)
    ss.store.engine.dispose()
    return home


def category(ss: StyleSense) -> dict[str, str]:
    return {it.item_id: it.attrs["articleType"] for it in ss.items()}
