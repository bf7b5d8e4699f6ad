"""Synthetic event logs with a known answer, for recommender tests.

``block_events`` draws shoppers who each stay inside one block (a "taste") of items: users of
block b interact only with items of block b, apart from an optional share of noise events on
any item. Ids carry their block (``"b2_u17"``, ``"b2_i5"``; ``block_of`` reads it back), so a
test can check that a model recovers the structure without keeping side tables. Inside a block,
items are drawn with a Zipf-like skew, so global popularity is a real (but block-blind) baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

T0 = 1_700_000_000  # epoch seconds of the first event

# Small, fast settings per registered model where only the mechanics matter (the contract
# tests; the model tests measure quality with their own settings).
QUICK: dict[str, dict] = {
    "als": {"factors": 8, "iterations": 5, "threads": 1},
    "bpr": {"factors": 8, "epochs": 10, "threads": 1},
    "itemknn": {"threads": 1},
    "neumf": {"factors": 8, "layers": "16,8", "epochs": 2, "pretrain": False, "valid_share": 0.0, "threads": 1},
    "gru4rec": {"hidden_size": 16, "epochs": 1, "batch_size": 16, "n_sample": 8, "threads": 1},
    "blend": {"models": "ease,itemknn,visual", "params": {"itemknn": {"threads": 1}}},
    "ranker": {"threads": 1, "windows": 1, "rounds": 20, "params": {"als": {"factors": 8, "iterations": 5}}},
}


def block_of(id_: str) -> int:
    """The block encoded in a synthetic user or item id (``"b3_u12"`` -> 3)."""
    return int(str(id_).split("_", 1)[0][1:])


def item_id(block: int, k: int) -> str:
    return f"b{block}_i{k}"


def user_id(block: int, k: int) -> str:
    return f"b{block}_u{k}"


def block_events(
    n_users: int = 300,
    n_items: int = 120,
    n_blocks: int = 4,
    per_user: int = 12,
    *,
    noise: float = 0.0,
    skew: float = 0.8,
    types: Sequence[str] = ("view",),
    seed: int = 0,
) -> pd.DataFrame:
    """An event log (user_id, item_id, type, ts) with block structure.

    ``n_users`` and ``n_items`` are split evenly over ``n_blocks`` (user k and item k go to
    block ``k % n_blocks``). Each user has ``per_user`` events on distinct items of their block,
    drawn with probability ~ 1 / rank**skew; a ``noise`` share of events instead hits a uniformly
    random item of another block. Event types are drawn uniformly from ``types``. Timestamps
    increase along each user's sequence, and users' sequences are interleaved in time.
    """
    if n_items < n_blocks or n_users < n_blocks:
        raise ValueError("need at least one user and one item per block")
    rng = np.random.default_rng(seed)
    items_per_block = [
        [item_id(b, k) for k in range(b, n_items, n_blocks)] for b in range(n_blocks)
    ]
    if per_user > min(len(x) for x in items_per_block):
        raise ValueError(f"per_user={per_user} exceeds the items of a block")
    others = {b: [i for c in range(n_blocks) if c != b for i in items_per_block[c]] for b in range(n_blocks)}
    rows = []
    for k in range(n_users):
        b = k % n_blocks
        pool = items_per_block[b]
        p = 1.0 / np.arange(1, len(pool) + 1) ** skew
        chosen = rng.choice(len(pool), size=per_user, replace=False, p=p / p.sum())
        seq = [pool[j] for j in chosen]
        for pos in range(per_user):
            if noise > 0 and len(others[b]) and rng.random() < noise:
                seq[pos] = others[b][rng.integers(len(others[b]))]
        start = rng.integers(0, 86_400 * 30)
        gaps = np.cumsum(rng.integers(60, 3_600, size=per_user))
        uid = user_id(b, k)
        for item, gap in zip(seq, gaps):
            rows.append((uid, item, str(types[rng.integers(len(types))]), T0 + int(start) + int(gap)))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"])
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def holdout_last(events: pd.DataFrame, n: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off each user's last ``n`` events (by ts) as the test set; users with no more
    than ``n`` events stay wholly in training. Held-out pairs the user also has in training are
    dropped from the test set (a model that excludes seen items could never hit them)."""
    ev = events.sort_values("ts", kind="stable")
    rank_from_end = ev.groupby("user_id").cumcount(ascending=False)
    size = ev.groupby("user_id")["item_id"].transform("size")
    test_mask = (rank_from_end < n) & (size > n)
    train, test = ev[~test_mask], ev[test_mask]
    seen = set(zip(train["user_id"], train["item_id"]))
    test = test[[(u, i) not in seen for u, i in zip(test["user_id"], test["item_id"])]]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def hit_rate(model, test: pd.DataFrame, k: int = 10) -> float:
    """Share of held-out (user, item) pairs whose item is in the user's top-k (seen excluded)."""
    users = [model.user_index[str(u)] for u in test["user_id"]]
    top, _ = model.recommend_batch(np.asarray(users, dtype=np.int64), k)
    ids = np.asarray(model.item_ids)
    hits = [str(i) in set(ids[row[row >= 0]].tolist()) for i, row in zip(test["item_id"], top)]
    return float(np.mean(hits))


def own_block_share(model, users: Sequence[str] | None = None, k: int = 10) -> np.ndarray:
    """Per user: the share of their top-k unseen recommendations from their own block."""
    users = list(model.user_ids if users is None else users)
    top, _ = model.recommend_batch(np.asarray([model.user_index[str(u)] for u in users]), k)
    ids = np.asarray(model.item_ids)
    return np.array(
        [np.mean([block_of(i) == block_of(u) for i in ids[row[row >= 0]]]) for u, row in zip(users, top)]
    )


def browse(
    user: str,
    block: int,
    n_items: int,
    n_blocks: int,
    count: int = 5,
    *,
    offset: int = 0,
    ts: int | None = None,
    type_: str = "view",
) -> pd.DataFrame:
    """``count`` real-time events (for ``update``) of ``user`` on items of ``block``, starting
    at the block's ``offset``-th item (0 is the block's most popular)."""
    ts = T0 + 10**8 if ts is None else ts
    items = [item_id(block, k) for k in range(block, n_items, n_blocks)][offset : offset + count]
    return pd.DataFrame(
        {"user_id": user, "item_id": items, "type": type_, "ts": [ts + j for j in range(len(items))]}
    )


def reloaded(model, path):
    """``model`` saved to ``path`` and read back by ``load_recommender``."""
    from stylesense.recommenders import load_recommender

    model.save(path)
    back = load_recommender(path)
    assert type(back) is type(model)
    return back


def movielens_events(root) -> pd.DataFrame:
    """MovieLens-100K ratings as an event log: every rating is one "rating" event."""
    from stylesense.datasets import movielens_100k

    r = movielens_100k(root)
    return pd.DataFrame(
        {"user_id": r["user_id"], "item_id": r["item_id"], "type": "rating", "ts": r["timestamp"].astype(np.int64)}
    )


def block_split(n_users: int = 400, n_items: int = 200, n_blocks: int = 4, seed: int = 1):
    """(Interactions of the training events, held-out test events) of a noisy block log: each
    user's last two events are the test. The common fixture of the model tests."""
    from stylesense.recommenders import Interactions

    events = block_events(n_users, n_items, n_blocks, per_user=12, noise=0.1, seed=seed)
    train, test = holdout_last(events, 2)
    return Interactions.from_frame(train), test


def assert_recovers_blocks(model, split, *, strict_share: float = 0.95) -> None:
    """The model's top-10s stay in each user's block (mean share >= 0.95, and >= 0.8 for a
    ``strict_share`` of users) and it hits held-out items at least 3x as often as popularity."""
    from stylesense.recommenders.popular import Popular

    data, test = split
    share = own_block_share(model)
    assert share.mean() >= 0.95 and np.mean(share >= 0.8) >= strict_share
    assert hit_rate(model, test) >= 3 * hit_rate(Popular().fit(data), test)


def assert_newcomers_get_their_block(model, data, n_items: int, n_blocks: int) -> None:
    """Shoppers first seen in ``update()`` (3 views in one block) are served that block, not
    the popularity list."""
    from stylesense.recommenders.popular import Popular

    popular = [r.item_id for r in Popular().fit(data).recommend("someone-unknown", k=10)]
    for block in range(n_blocks):
        user = f"newcomer-{block}"
        model.update(browse(user, block, n_items, n_blocks, count=3, offset=6))
        recs = [r.item_id for r in model.recommend(user, k=10)]
        assert sum(block_of(i) == block for i in recs) >= 9 and recs != popular


def sampled_search_space(model_class, n: int = 20) -> list[dict]:
    """``n`` parameter sets drawn from ``model_class.search_space`` by a seeded random Optuna
    sampler (what ``tune`` would try), for tests that check each builds a valid model."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return [model_class.search_space(study.ask()) for _ in range(n)]


def block_shop(root, n_users: int, n_items: int, n_blocks: int, per_user: int, seed: int):
    """A home (no CNN: random features straight into the store) whose catalogue is a block
    log's items, each with its ``block`` column, and whose events are that log."""
    from stylesense.catalog.store import Upsert
    from stylesense.engine import StyleSense

    ss = StyleSense(root, threads=1)
    events = block_events(n_users=n_users, n_items=n_items, n_blocks=n_blocks, per_user=per_user,
                          types=("view", "purchase"), seed=seed)
    events["ts"] = pd.to_datetime(events["ts"], unit="s", utc=True)
    ss.behaviour.events.import_frame(events)
    feats = np.random.default_rng(0).standard_normal((n_items, 8)).astype(np.float32)
    ids = sorted(set(events["item_id"]))
    ss.store.upsert([Upsert(i, {"block": i.split("_")[0]}, None, f"h{i}", feats[n]) for n, i in enumerate(ids)])
    return ss


def looks_shop(root, n_looks: int = 3, per_look: int = 10, dim: int = 16, index_kind: str | None = None):
    """A home (no CNN) whose products come in ``n_looks`` looks of ``per_look`` near-identical
    photos ("l0_p3": look 0, product 3; search-vector cosine above 0.95 inside a look, about 0
    across looks), and whose log ranks every product of look 0 above look 1 above look 2 by
    buyers (product j of look g has ``(n_looks - g) * per_look + per_look - j`` distinct
    buyers among shoppers s0, s1, ...): a model's top list is one look, and a diverse list, or
    one lowering a disliked product's look-alikes, must reach into the others. ``index_kind``:
    the home's index (default: the index file), e.g. ``milvus`` for a Milvus Lite collection."""
    from stylesense.catalog.store import Upsert
    from stylesense.engine import StyleSense

    if index_kind is not None:
        StyleSense.init(root, index_kind=index_kind)
    ss = StyleSense(root, threads=1)
    rng = np.random.default_rng(0)
    ids, feats = [], []
    for g in range(n_looks):
        for j in range(per_look):
            ids.append(f"l{g}_p{j}")
            feats.append(np.eye(dim, dtype=np.float32)[g] + 0.02 * rng.standard_normal(dim).astype(np.float32))
    ss.store.upsert([Upsert(i, {"look": i.split("_")[0]}, None, f"h{i}", f) for i, f in zip(ids, feats)])
    ss.sync_index()
    rows = []
    for n, item in enumerate(ids):
        g, j = divmod(n, per_look)
        buyers = (n_looks - g) * per_look + per_look - j
        rows += [(f"s{u}", item, "purchase", pd.Timestamp(T0 + 3600 * (n + u), unit="s", tz="UTC")) for u in range(buyers)]
    ss.behaviour.events.import_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"]))
    return ss


def look_of(item: str) -> int:
    """The look of a ``looks_shop`` product (``"l2_p7"`` -> 2)."""
    return int(item.split("_", 1)[0][1:])
