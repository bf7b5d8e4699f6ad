"""Style clusters of the catalogue and segments of its shoppers: the paper's "estimated number
of clusters", for the web app's clusters page and `stylesense clusters`.

Style clusters group the catalogue by what search sees: the vectors the index holds (live,
shown items; the adapter's vectors where the home has one). Each item's nearest neighbours by
cosine, found by the library's own index as a search finds them, make one neighbour graph;
UMAP lays that graph out twice, in 10 dimensions for clustering (density-based clustering
fails in 1,280) and in 2 for the map, and HDBSCAN finds the dense regions of the first layout.
HDBSCAN chooses the number of clusters itself and leaves items that belong to no dense region
unassigned (noise), which a catalogue of one-off products needs: forcing every item into one
of k groups hides how many styles there are. Its one size setting grows with the catalogue
(``default_min_cluster_size``), so a catalogue nobody tuned for still gets clusters of a size a
person reads as a style. Each cluster is described by its dominant value in every label column
(the catalogue's own categorical metadata) and its most typical items (closest to its mean).

Shopper segments group shoppers by what they do: each shopper's events on catalogue items,
weighted by event type as the recommenders weight them, become shares over one category column;
KMeans on those shares (as square roots: the Hellinger distance between two mixes) with the
number of segments that gives the best silhouette.

Both take seconds to minutes (UMAP's compiled code alone costs seconds in a new process), so
each result is cached in the home (``HOME/clusters/``) under a stamp of everything it was
computed from: every searchable item's id, feature version and metadata (any import, update,
hide, show or removal changes it), the vectors' recipe, the settings, and for segments the
events and their weights. A valid cache is read in about 0.1 s for 10,000 items; a stale one
is recomputed under the home's lock, once, however many processes ask at the same time.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from sqlalchemy import func, select
from threadpoolctl import threadpool_limits

from stylesense.atomic import DamagedFile, atomic_write, load_npz, save_npz
from stylesense.catalog.store import ItemRow
from stylesense.errors import InvalidInput, NotReady
from stylesense.events.store import EventRow

if TYPE_CHECKING:
    from stylesense.engine import StyleSense

CACHE_DIR = "clusters"  # in the home
CACHE_FORMAT = 1  # bump when a result's content or the way it is computed changes
NEIGHBOURS = 15  # UMAP's neighbour graph: each item and its 14 nearest (UMAP's default)
CLUSTER_DIMS = 10  # the layout HDBSCAN clusters
EPOCHS = 200  # UMAP's optimisation epochs (its default above 10,000 items; 500 below buys nothing seen here)
MAX_MIN_SAMPLES = 10
"""HDBSCAN's min_samples (how dense a region must be), capped: left equal to a large
min_cluster_size it merges a catalogue into a handful of giant clusters (H&M's 4,116 articles
at min_cluster_size 32: 7 clusters, one of 60 % of them, where 10 finds 30)."""
MIN_ITEMS = 20  # fewer searchable items than this have no styles to find
TYPICAL = 12  # typical items listed per cluster
LABEL_MAX_VALUES = 200  # a metadata column with more distinct values is a name, not a label
LABEL_MIN_COVERAGE = 0.5  # ... and one that most items lack is no label of the catalogue

MIN_SHOPPER_EVENTS = 3  # a shopper with fewer events on catalogue items has no mix to segment by
MIN_SHOPPERS = 10
MAX_SEGMENTS = 12
SEGMENT_CATEGORY_MAX_VALUES = 30
"""Most values the automatically chosen category column may have: shares over more are too
sparse to segment by (and a page of segments would list them unreadably)."""
CATEGORY_HINTS = ("categ", "type", "group", "class", "department", "section")
FAVOURITES = 5  # favourite categories listed per segment
SILHOUETTE_SAMPLE = 3000  # shoppers the silhouette of each candidate k is measured on


Row = tuple[int, str, int, dict[str, Any]]  # a searchable item: pk, id, feature version, metadata


def default_min_cluster_size(n_items: int) -> int:
    """HDBSCAN's smallest cluster for a catalogue of ``n_items``: half the square root (48 for
    the 9,583 Kaggle products, 32 for H&M's 4,116 articles, 5 at the least). The number of
    styles a catalogue holds grows more slowly than the catalogue; a fixed share of it would
    give a 100,000-item catalogue no cluster under 500 items."""
    return max(5, round(math.sqrt(n_items) / 2))


# -- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StyleCluster:
    """One style: its members' count, most typical items (closest to the cluster's mean
    vector first), and for each label column the dominant value, the share of members that
    have it (purity) and how much more often than in the whole catalogue (lift)."""

    id: int
    size: int
    typical: list[str]
    labels: dict[str, str]
    purity: dict[str, float]
    lift: dict[str, float] = field(default_factory=dict)
    xy: tuple[float, float] = (0.0, 0.0)  # where the cluster sits on the map (its members' median)

    def top_labels(self, n: int = 3) -> list[tuple[str, str, float]]:
        """The ``n`` labels that best say what this cluster is, as (column, value, purity):
        those most members share (purity >= 0.5) ranked by purity x log(lift), so "Tshirts"
        comes before "Apparel", which most of the catalogue is anyway; a value two columns
        share is listed once."""
        scored = sorted(((self.purity[c] * math.log(max(self.lift.get(c, 1.0), 1.0)), c) for c in self.labels
                         if self.purity[c] >= 0.5), key=lambda t: -t[0])
        out: list[tuple[str, str, float]] = []
        for score, c in scored:
            if score > 0 and len(out) < n and all(v != self.labels[c] for _, v, _ in out):  # "Trousers" once
                out.append((c, self.labels[c], self.purity[c]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "size": self.size, "typical": self.typical, "labels": self.labels,
                "purity": self.purity, "lift": self.lift, "xy": list(self.xy),
                "top_labels": [{"column": c, "value": v, "purity": p} for c, v, p in self.top_labels()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StyleCluster":
        return cls(id=data["id"], size=data["size"], typical=list(data["typical"]), labels=dict(data["labels"]),
                   purity=dict(data["purity"]), lift=dict(data["lift"]), xy=(data["xy"][0], data["xy"][1]))


@dataclass(frozen=True, eq=False)  # holds arrays: compare ``to_dict()``s
class StyleClusters:
    """The catalogue's styles. ``assignment[i]`` is the cluster of ``item_ids[i]`` (-1: noise,
    an item in no dense region) and ``xy[i]`` its place on the 2-D map; clusters are numbered
    largest first. ``cached``: read from the home's cache rather than computed by this call;
    ``seconds``: how long computing it took."""

    n_clusters: int
    noise: int
    item_ids: list[str]
    assignment: np.ndarray
    xy: np.ndarray
    clusters: list[StyleCluster]
    method: str
    min_cluster_size: int = 0
    label_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0
    computed_at: str = ""
    cached: bool = False

    def cluster_of(self, item_id: str) -> int:
        """The cluster of one item (-1: noise); ValueError if it was not clustered."""
        return int(self.assignment[self.item_ids.index(item_id)])

    def to_dict(self, points: bool = True) -> dict[str, Any]:
        """JSON-ready; ``points``: with every item's cluster and map position (a 2-D map needs
        them; a summary does not)."""
        out: dict[str, Any] = {
            "n_clusters": self.n_clusters, "noise": self.noise, "items": len(self.item_ids),
            "method": self.method, "min_cluster_size": self.min_cluster_size, "label_columns": self.label_columns,
            "seconds": self.seconds, "computed_at": self.computed_at, "cached": self.cached,
            "clusters": [c.to_dict() for c in self.clusters],
        }
        if points:
            out["points"] = {"item_id": self.item_ids, "cluster": self.assignment.tolist(),
                             "x": np.round(self.xy[:, 0], 4).tolist(), "y": np.round(self.xy[:, 1], 4).tolist()}
        return out

    def plot(self, path: str | Path) -> Path:
        """The 2-D map as a PNG: one colour per cluster, noise in light grey, each of the
        largest clusters marked with its number. A bare ``Figure`` (no pyplot), so no global
        backend or figure state of the calling process is touched."""
        from matplotlib import colormaps
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9.0, 7.5))
        ax = fig.subplots()
        noise = self.assignment < 0
        ax.scatter(self.xy[noise, 0], self.xy[noise, 1], s=3, c="#d0d0d0", linewidths=0, label="noise")
        palette = colormaps["tab20"]
        for c in self.clusters:
            members = self.assignment == c.id
            ax.scatter(self.xy[members, 0], self.xy[members, 1], s=4, color=palette(c.id % 20), linewidths=0)
        for c in self.clusters[:30]:
            name = " ".join(v for _, v, _ in c.top_labels(2)) or "mixed"
            ax.annotate(f"{c.id} {name}", c.xy, fontsize=7, ha="center", weight="bold")
        ax.set_title(f"{self.n_clusters} style clusters of {len(self.item_ids)} items "
                     f"({self.noise} unassigned)")
        ax.set_xticks([])
        ax.set_yticks([])
        fig.tight_layout()
        path = Path(path)
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
        return path

    def _save(self, path: Path, stamp: str) -> None:
        save_npz(path, {"format": CACHE_FORMAT, "stamp": stamp, "result": self.to_dict(points=False)},
                 {"item_ids": np.array(self.item_ids, dtype=str), "assignment": self.assignment,
                  "xy": self.xy})

    @classmethod
    def _restore(cls, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "StyleClusters":
        r = header["result"]
        return cls(n_clusters=r["n_clusters"], noise=r["noise"], item_ids=arrays["item_ids"].tolist(),
                   assignment=arrays["assignment"], xy=arrays["xy"],
                   clusters=[StyleCluster.from_dict(c) for c in r["clusters"]], method=r["method"],
                   min_cluster_size=r["min_cluster_size"], label_columns=r["label_columns"], seconds=r["seconds"],
                   computed_at=r["computed_at"], cached=True)


@dataclass(frozen=True)
class ShopperSegment:
    """One group of shoppers who shop alike: how many, their favourite categories as
    (value, mean share of a member's events), the members closest to the segment's centre,
    and how many catalogue events a member has on average."""

    id: int
    size: int
    favourite_categories: list[tuple[str, float]]
    typical_shoppers: list[str] = field(default_factory=list)
    events_per_shopper: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "size": self.size,
                "favourite_categories": [{"category": c, "share": s} for c, s in self.favourite_categories],
                "typical_shoppers": self.typical_shoppers, "events_per_shopper": self.events_per_shopper}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ShopperSegment":
        return cls(id=data["id"], size=data["size"],
                   favourite_categories=[(f["category"], f["share"]) for f in data["favourite_categories"]],
                   typical_shoppers=list(data["typical_shoppers"]), events_per_shopper=data["events_per_shopper"])


@dataclass(frozen=True, eq=False)  # holds arrays: compare ``to_dict()``s
class ShopperSegments:
    """Segments of the shoppers with at least MIN_SHOPPER_EVENTS events on catalogue items
    (``shoppers``; ``unassigned`` had fewer), largest first, by shares of ``category``.
    ``assignment[i]`` is the segment of ``user_ids[i]``."""

    n_segments: int
    segments: list[ShopperSegment]
    category: str = ""
    shoppers: int = 0
    unassigned: int = 0
    silhouette: float | None = None
    method: str = ""
    user_ids: list[str] = field(default_factory=list)
    assignment: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    seconds: float = 0.0
    computed_at: str = ""
    cached: bool = False

    def segment_of(self, user_id: str) -> int | None:
        """The segment of one shopper; None for a shopper too new (or unknown) to segment."""
        try:
            return int(self.assignment[self.user_ids.index(user_id)])
        except ValueError:
            return None

    def to_dict(self, members: bool = True) -> dict[str, Any]:
        """JSON-ready; ``members``: with every segmented shopper's segment."""
        out: dict[str, Any] = {
            "n_segments": self.n_segments, "category": self.category, "shoppers": self.shoppers,
            "unassigned": self.unassigned, "silhouette": self.silhouette, "method": self.method,
            "seconds": self.seconds, "computed_at": self.computed_at, "cached": self.cached,
            "segments": [s.to_dict() for s in self.segments],
        }
        if members:
            out["members"] = {"user_id": self.user_ids, "segment": self.assignment.tolist()}
        return out

    def _save(self, path: Path, stamp: str) -> None:
        save_npz(path, {"format": CACHE_FORMAT, "stamp": stamp, "result": self.to_dict(members=False)},
                 {"user_ids": np.array(self.user_ids, dtype=str), "assignment": self.assignment})

    @classmethod
    def _restore(cls, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "ShopperSegments":
        r = header["result"]
        return cls(n_segments=r["n_segments"], segments=[ShopperSegment.from_dict(s) for s in r["segments"]],
                   category=r["category"], shoppers=r["shoppers"], unassigned=r["unassigned"],
                   silhouette=r["silhouette"], method=r["method"], user_ids=arrays["user_ids"].tolist(),
                   assignment=arrays["assignment"], seconds=r["seconds"], computed_at=r["computed_at"], cached=True)


# -- entry points ----------------------------------------------------------------------------
def style_clusters(ss: StyleSense, *, min_cluster_size: int | None = None, refresh: bool = False) -> StyleClusters:
    """The catalogue's style clusters (see the module docstring), from the home's cache while
    the catalogue is unchanged; ``refresh`` recomputes them anyway. ``min_cluster_size``:
    HDBSCAN's smallest cluster (default: ``default_min_cluster_size`` of the catalogue)."""
    if min_cluster_size is not None and (isinstance(min_cluster_size, bool) or min_cluster_size < 2):
        raise InvalidInput(f"min_cluster_size must be an integer of at least 2, got {min_cluster_size!r}")

    def key() -> tuple[str, Callable[[], StyleClusters]]:
        rows = _searchable_rows(ss)
        size = min_cluster_size or default_min_cluster_size(len(rows))
        stamp = _stamp("styles", ss, rows, {"min_cluster_size": size})
        return stamp, lambda: _compute_styles(ss, rows, size)

    return _cached(ss, "styles", StyleClusters, key, refresh)


def shopper_segments(ss: StyleSense, *, n_segments: int | None = None, category: str | None = None,
                     refresh: bool = False) -> ShopperSegments:
    """Segments of the home's shoppers by the mix of categories they shop (see the module
    docstring), from the home's cache while catalogue and events are unchanged. ``category``:
    the metadata column to mix over (default: ``default_category`` of the catalogue);
    ``n_segments``: a fixed number instead of the one with the best silhouette."""
    if n_segments is not None and (isinstance(n_segments, bool) or not 2 <= n_segments <= 100):
        raise InvalidInput(f"n_segments must be an integer from 2 to 100, got {n_segments!r}")

    def key() -> tuple[str, Callable[[], ShopperSegments]]:
        items = [(it.item_id, it.attrs) for it in ss.store.items()]  # hidden ones too: shoppers saw them
        column = category or default_category(ss, [attrs for _, attrs in items])
        extra = {"n_segments": n_segments, "category": column, "weights": ss.behaviour.weights,
                 "events": _events_stamp(ss)}
        stamp = _stamp("segments", ss, items, extra)
        return stamp, lambda: _compute_segments(ss, items, column, n_segments)

    return _cached(ss, "segments", ShopperSegments, key, refresh)


def label_columns(attrs: Sequence[Mapping[str, Any]], skip: Sequence[str] = ()) -> list[str]:
    """The catalogue's label columns, in the order items first name them: text values on at
    least LABEL_MIN_COVERAGE of the items, 2 to LABEL_MAX_VALUES distinct values and at most
    one for every five items (product names and descriptions are not labels). Numbers are
    not labels either (prices, years, numeric codes beside their named twins), nor is a
    column that only renames another's values."""
    n = len(attrs)
    values: dict[str, Counter] = {}
    for a in attrs:
        for col, v in a.items():
            if isinstance(v, str) and col not in skip:
                values.setdefault(col, Counter())[v] += 1
    cap = min(LABEL_MAX_VALUES, max(2, n // 5))
    found = [col for col, counts in values.items()
             if sum(counts.values()) >= LABEL_MIN_COVERAGE * n and 2 <= len(counts) <= cap]
    # A column that only renames another one's values (H&M's index_code "A" for index_name
    # "Ladieswear") says nothing more: keep the one with the longer values, a name over a code.
    length = {c: sum(len(v) * k for v, k in values[c].items()) / sum(values[c].values()) for c in found}
    dropped: set[str] = set()
    for i, a in enumerate(found):
        for b in found[i + 1:]:
            if a in dropped or b in dropped or len(values[a]) != len(values[b]):
                continue
            pairs = {(x.get(a), x.get(b)) for x in attrs}
            if len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs}):
                dropped.add(a if length[a] < length[b] else b)
    return [c for c in found if c not in dropped]


def default_category(ss: StyleSense, attrs: Sequence[Mapping[str, Any]]) -> str:
    """The column shopper segments mix over when none is given: among the label columns with
    at most SEGMENT_CATEGORY_MAX_VALUES values, the one with the most values, preferring
    columns named like a category (CATEGORY_HINTS: "subCategory" over "baseColour")."""
    columns = label_columns(attrs, skip=(ss.config.price_column, ss.config.stock_column))
    if not columns:
        raise NotReady("the catalogue has no label columns (text metadata such as a category) to segment "
                       "shoppers by: import items with metadata, or name a column")
    counts = {c: len({a[c] for a in attrs if isinstance(a.get(c), str)}) for c in columns}
    small = [c for c in columns if counts[c] <= SEGMENT_CATEGORY_MAX_VALUES] or [min(columns, key=counts.get)]
    named = [c for c in small if any(h in c.lower() for h in CATEGORY_HINTS)] or small
    return max(named, key=counts.get)


# -- cache -----------------------------------------------------------------------------------
Result = TypeVar("Result", StyleClusters, ShopperSegments)


def _cached(ss: StyleSense, name: str, kind: type[Result],
            key: Callable[[], tuple[str, Callable[[], Result]]], refresh: bool) -> Result:
    """The result cached as ``name`` if its stamp is still the one ``key`` gives, else computed
    (by ``key``'s second part) and cached, under the home's lock for ``name`` so that two
    processes never compute it twice: the second waits and reads the first one's file. The
    stamp is taken again once the lock is held, from the catalogue as it is then."""
    path = ss.home.root / CACHE_DIR / f"{name}.npz"
    if not refresh:
        stamp, _ = key()
        found = _load(path, stamp, kind)
        if found is not None:
            return found
    with ss.home.locked(f"clusters-{name}"):
        stamp, compute = key()
        found = None if refresh else _load(path, stamp, kind)
        if found is not None:
            return found
        with threadpool_limits(ss.threads) if ss.threads else nullcontext():  # the home's --threads
            result = compute()
        result._save(path, stamp)
        return result


def _load(path: Path, stamp: str, kind: type[Result]) -> Result | None:
    """The cached result if the file holds one for ``stamp``; None when it is missing, stale,
    or unreadable (a cache is recomputed, never repaired)."""
    try:
        header, arrays = load_npz(path, CACHE_FORMAT, "clusters cache")
    except (FileNotFoundError, DamagedFile):
        return None
    if header.get("stamp") != stamp:
        return None
    try:
        return kind._restore(header, arrays)
    except (KeyError, TypeError, IndexError):  # a file of another shape under the same format number
        return None


def _searchable_rows(ss: StyleSense) -> list[Row]:
    """(pk, item id, feature version, metadata) of every item the index holds (live, shown,
    with features), in pk order: what style clusters are computed from, and the content of
    their stamp. Read without the features themselves, so checking a cache stays cheap."""
    q = select(ItemRow.pk, ItemRow.item_id, ItemRow.features_version, ItemRow.attrs).where(
        ItemRow.removed.is_(False), ItemRow.hidden.is_(False), ItemRow.features.is_not(None)
    ).order_by(ItemRow.pk)
    with ss.store.engine.connect() as conn:
        return [(r[0], r[1], r[2], r[3] or {}) for r in conn.execute(q)]


def _events_stamp(ss: StyleSense) -> list[int]:
    """How many events there are, the newest's pk and the sum of their times' microsecond
    parts: an added, deleted or replaced event changes one of the three (a replaced newest
    event may get its predecessor's pk back, but not its time)."""
    row = EventRow.__table__.c
    query = select(func.count(), func.coalesce(func.max(row.pk), 0), func.coalesce(func.sum(row.ts_us % 1_000_000), 0))
    with ss.behaviour.events.engine.connect() as conn:  # the event store makes its table where none is yet
        return [int(v) for v in conn.execute(query).one()]


def _stamp(name: str, ss: StyleSense, rows: Sequence[Any], extra: Mapping[str, Any]) -> str:
    """A digest of everything a result depends on: a change to any of it is a new stamp."""
    digest = hashlib.sha256()
    head = {"result": name, "format": CACHE_FORMAT, "vectors": ss.embedder_name, "recipe": ss.feature_recipe,
            "price": ss.config.price_column, "stock": ss.config.stock_column, **extra}
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, default=str, ensure_ascii=False).encode())
    return digest.hexdigest()


# -- style clusters --------------------------------------------------------------------------
def _compute_styles(ss: StyleSense, rows: list[Row], min_cluster_size: int) -> StyleClusters:
    from sklearn.cluster import HDBSCAN

    started = time.perf_counter()
    pks, raw = ss.store.features(searchable=True)
    # Items that changed between the two reads are left out; the stamp, read first, then no
    # longer matches the catalogue, so the next call computes afresh.
    known = {r[0]: r for r in rows}
    keep = np.array([int(p) in known for p in pks], dtype=bool)
    pks, raw = pks[keep], raw[keep]
    n = len(pks)
    if n < MIN_ITEMS:
        raise NotReady(f"style clusters need at least {MIN_ITEMS} searchable items with photos; the catalogue "
                       f"has {n}: import more items (or show hidden ones)")
    vectors = ss.to_vectors(raw).astype(np.float32)
    neighbours = _neighbours(vectors, min(NEIGHBOURS, n - 1))
    layout = _umap(vectors, neighbours, CLUSTER_DIMS, min_dist=0.0)
    xy = _umap(vectors, neighbours, 2, min_dist=0.1)
    min_samples = min(min_cluster_size, MAX_MIN_SAMPLES)
    found = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, copy=True).fit(layout).labels_
    assignment = _by_size(found)

    attrs = [known[int(p)][3] for p in pks]
    item_ids = [known[int(p)][1] for p in pks]
    columns = label_columns(attrs, skip=(ss.config.price_column, ss.config.stock_column))
    overall = {c: Counter(a[c] for a in attrs if isinstance(a.get(c), str)) for c in columns}
    clusters = []
    for cid in range(int(assignment.max()) + 1):
        members = np.flatnonzero(assignment == cid)
        centre = vectors[members].mean(axis=0)
        closest = members[np.argsort(-(vectors[members] @ centre), kind="stable")[:TYPICAL]]
        labels, purity, lift = {}, {}, {}
        for c in columns:
            counts = Counter(attrs[i][c] for i in members if isinstance(attrs[i].get(c), str))
            if not counts:
                continue
            value, count = counts.most_common(1)[0]
            labels[c], purity[c] = value, round(count / len(members), 4)
            lift[c] = round(purity[c] / (overall[c][value] / n), 3)
        centre_xy = np.median(xy[members], axis=0)
        clusters.append(StyleCluster(cid, len(members), [item_ids[i] for i in closest], labels, purity, lift,
                                     (round(float(centre_xy[0]), 4), round(float(centre_xy[1]), 4))))
    method = (f"HDBSCAN (min_cluster_size {min_cluster_size}, min_samples {min_samples}) on a "
              f"{CLUSTER_DIMS}-d UMAP of the {ss.embedder_name} search vectors ({neighbours[0].shape[1]} cosine "
              "neighbours); map: 2-d UMAP of the same neighbour graph")
    return StyleClusters(n_clusters=len(clusters), noise=int((assignment < 0).sum()), item_ids=item_ids,
                         assignment=assignment, xy=xy.astype(np.float32), clusters=clusters, method=method,
                         min_cluster_size=min_cluster_size, label_columns=columns,
                         seconds=round(time.perf_counter() - started, 2), computed_at=_now())


def _neighbours(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``k`` nearest items (itself included, as UMAP expects) and their cosine
    distances, from a throwaway index of the library's own kinds: exact up to the size where
    search itself turns to HNSW, so UMAP never compiles and runs its own neighbour search."""
    from stylesense.index import make_index

    n = len(vectors)
    index = make_index("auto", vectors.shape[1], n)
    index.build(np.arange(n, dtype=np.int64), vectors)
    scores, ids = index.search(vectors, k)
    missing = ids < 0  # an approximate index may return fewer than k: repeat the item itself
    ids = np.where(missing, np.arange(n)[:, None], ids)
    distances = np.where(missing, 0.0, np.clip(1.0 - scores, 0.0, 2.0))
    return ids.astype(np.int64), distances.astype(np.float32)


def _umap(vectors: np.ndarray, neighbours: tuple[np.ndarray, np.ndarray], dims: int, min_dist: float) -> np.ndarray:
    """A ``dims``-d UMAP layout of the neighbour graph, the same for the same input (fixed
    seed, which also makes UMAP run on one thread)."""
    import umap

    ids, distances = neighbours
    model = umap.UMAP(n_neighbors=ids.shape[1], n_components=dims, min_dist=min_dist, metric="cosine",
                      n_epochs=EPOCHS, random_state=0, n_jobs=1, precomputed_knn=(ids, distances))
    with warnings.catch_warnings():  # it warns that, without its own search index, it cannot transform new items
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray(model.fit_transform(vectors), dtype=np.float32)


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Cluster labels renumbered largest first (ties: the one whose first member comes first),
    -1 kept."""
    valid = labels >= 0
    if not valid.any():
        return np.full(len(labels), -1, dtype=np.int32)
    ids, first, counts = np.unique(labels[valid], return_index=True, return_counts=True)
    renumber = np.full(int(ids.max()) + 1, -1, dtype=np.int32)
    renumber[ids[np.lexsort((first, -counts))]] = np.arange(len(ids), dtype=np.int32)
    return np.where(valid, renumber[np.clip(labels, 0, None)], -1).astype(np.int32)


# -- shopper segments ------------------------------------------------------------------------
def _compute_segments(ss: StyleSense, items: list[tuple[str, dict[str, Any]]], column: str,
                      n_segments: int | None) -> ShopperSegments:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    from stylesense.behaviour import NO_EVENTS

    started = time.perf_counter()
    category = {item: str(attrs[column]) for item, attrs in items if isinstance(attrs.get(column), (str, int, float))}
    if not category:
        known = sorted({c for _, attrs in items for c in attrs})
        raise InvalidInput(f"no catalogue item has column {column!r}; columns: {', '.join(known) or 'none'}")
    events = ss.behaviour.events.frame()
    if events.empty:
        raise NotReady(NO_EVENTS)
    weights = ss.behaviour.weights
    events = events.assign(category=events["item_id"].map(category),
                           weight=events["type"].map(lambda t: weights.get(t, 0.0)))
    on_catalogue = events.dropna(subset=["category"])
    counts = on_catalogue.groupby("user_id").size()
    eligible = counts[counts >= MIN_SHOPPER_EVENTS].index
    unassigned = events["user_id"].nunique() - len(eligible)
    if len(eligible) < MIN_SHOPPERS:
        raise NotReady(f"shopper segments need at least {MIN_SHOPPERS} shoppers with {MIN_SHOPPER_EVENTS}+ events "
                       f"on catalogue items; the home has {len(eligible)}: import events on catalogue products")
    table = (on_catalogue[on_catalogue["user_id"].isin(eligible)]
             .pivot_table(index="user_id", columns="category", values="weight", aggfunc="sum", fill_value=0.0))
    totals = table.sum(axis=1).to_numpy()
    shares = table.to_numpy() / np.where(totals > 0, totals, 1.0)[:, None]
    points = np.sqrt(shares)  # Euclidean distance between square roots: the Hellinger distance of two mixes
    users, names = table.index.astype(str).tolist(), table.columns.astype(str).tolist()

    distinct = len(np.unique(points, axis=0))  # KMeans cannot make more groups than there are mixes
    if n_segments is not None:
        k_values = [max(2, min(n_segments, distinct))]
    else:
        k_values = list(range(2, max(2, min(MAX_SEGMENTS, len(users) // 5, distinct)) + 1))
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for k in k_values:
        model = KMeans(n_clusters=k, n_init=4, random_state=0).fit(points)
        labels = model.labels_
        score = (float(silhouette_score(points, labels, sample_size=min(SILHOUETTE_SAMPLE, len(users)),
                                        random_state=0)) if len(set(labels)) > 1 else -1.0)
        if best is None or score > best[0]:
            best = (score, labels, model.cluster_centers_)
    assert best is not None
    score, labels, centres = best
    assignment = _by_size(labels)
    renumbered = {int(old): int(new) for old, new in zip(labels, assignment)}
    per_user = counts.reindex(table.index).to_numpy()
    segments = []
    for sid in range(int(assignment.max()) + 1):
        members = np.flatnonzero(assignment == sid)
        mean = shares[members].mean(axis=0)
        top = np.argsort(-mean, kind="stable")[:FAVOURITES]
        old = next(o for o, s in renumbered.items() if s == sid)
        distance = np.linalg.norm(points[members] - centres[old], axis=1)
        closest = members[np.argsort(distance, kind="stable")[:TYPICAL]]
        favourites = [(names[j], round(float(mean[j]), 4)) for j in top if mean[j] > 0]
        segments.append(ShopperSegment(sid, len(members), favourites, [users[i] for i in closest],
                                       round(float(per_user[members].mean()), 2)))
    chosen = "fixed" if n_segments is not None else f"best silhouette of k = 2..{k_values[-1]}"
    method = (f"KMeans (k {len(segments)}, {chosen}) on the square roots of each shopper's event-weighted "
              f"shares over {column!r}")
    return ShopperSegments(n_segments=len(segments), segments=segments, category=column, shoppers=len(users),
                           unassigned=int(unassigned), silhouette=round(score, 4), method=method, user_ids=users,
                           assignment=assignment, seconds=round(time.perf_counter() - started, 2), computed_at=_now())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
