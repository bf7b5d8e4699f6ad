"""`stylesense doctor`: check a home, and with ``repair`` rebuild what can be rebuilt.

A home holds two kinds of files. The database (catalogue, raw features, events) and the
adapter are originals: nothing else holds what they hold, so the doctor checks them and says
how to restore them, and never rewrites or deletes them. The index (from the stored features),
the saved models (from the events) and the config (from what the home holds) are derived, so
``repair`` rebuilds them, or moves an unloadable model aside (``NAME.npz.damaged``) for a
retrain. A repair never guesses: the config is rewritten only when re-embedding a few stored
photos reproduces their stored features, since a wrong embedder would mix two models' vectors
in one index. The cached CNN needs no check: the embedder exports it again when unusable.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from stylesense.atomic import DamagedFile
from stylesense.catalog.store import DATABASE_REPAIR, CatalogStore, make_engine
from stylesense.engine import ADAPTER_NAME, StyleSense, adapter_recipe
from stylesense.errors import StyleSenseError
from stylesense.home import LEGACY_RECIPE, REPAIR, Config, Home, damaged
from stylesense.index import load_index
from stylesense.index.store import database_store
from stylesense.recommenders import load_recommender
from stylesense.vision.adapter import Adapter, normalize
from stylesense.vision.colour import DIM as COLOUR_DIM
from stylesense.vision.embedder import CNN_DIM, EMBEDDERS, make_embedder
from stylesense.vision.images import content_hash

RECIPE_MATCH = 0.99
"""Cosine between a re-embedded photo and its stored features above which both came from the
same recipe: the same recipe gives 1.0 on one machine and >= 0.998 across runtimes (bf16 vs
fp32, docs/vision.md); GeM vs mean pooling of the same network measured 0.95-0.96."""
RECIPE_PHOTOS = 3
"""Stored photos re-embedded to identify the recipe: any one would do; three guard against a
photo that happens to sit where two recipes agree."""
RECIPE_CANDIDATES = 50
"""Items looked at to find RECIPE_PHOTOS whose files are still on disk, unchanged."""


@dataclass(frozen=True)
class Finding:
    """One check's outcome: ``ok`` means healthy now (it was, or ``repaired`` made it so)."""

    name: str  # home, config, database, adapter, index, or "model NAME"
    ok: bool
    message: str
    repaired: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "repaired": self.repaired, "message": self.message}


def check(home: str | Path | None = None, *, repair: bool = False, threads: int | None = None) -> list[Finding]:
    """Check the home (database integrity, config, adapter and its recipe, index against the
    database, every saved model); with ``repair``, rebuild what can be rebuilt. Takes a path,
    not a StyleSense, because a damaged config or database stops StyleSense from opening."""
    try:
        h = Home.resolve(home)
    except StyleSenseError as e:
        return [Finding("home", False, str(e))]
    if not h.config_path.exists() and not h.database_path.exists():
        return [Finding("home", False, f"{h.root} holds no stylesense home (no {h.config_path.name}, no database)")]

    config_error: str | None = None
    try:
        config: Config | None = h.load_config() if h.config_path.exists() else None
    except StyleSenseError as e:
        config, config_error = None, str(e)
    if config is None and config_error is None:
        config_error = f"config {h.config_path} is missing: {REPAIR} to rewrite it from what the home holds"
    if config is None and not h.database_path.exists():
        return [Finding("config", False, f"config {h.config_path} is unreadable and the database is not in the "
                        f"home: only a backup of {h.config_path.name} (which names its URL) can restore it")]

    database = _check_database(h.database_url(config or Config()))
    if config is not None:
        config_finding = Finding("config", True, f"{h.config_path} is readable")
    elif not database.ok or not repair:
        return [Finding("config", False, config_error), database]  # the error names the repair
    else:
        rebuilt, how = _rebuild_config(h, threads)
        if rebuilt is None:
            return [Finding("config", False, f"config {h.config_path} is unreadable and cannot be rewritten: {how}"),
                    database]
        was = "was unreadable" if h.config_path.exists() else "was missing"
        aside = f"; the damaged file is now {_move_aside(h.config_path)}" if h.config_path.exists() else ""
        h.save_config(rebuilt)
        config_finding = Finding("config", True, f"config {h.config_path} {was}; rewrote it: {how}{aside}",
                                 repaired=True)
    if not database.ok:
        return [config_finding, database]

    findings = [config_finding, database]
    ss = StyleSense(h.root, threads=threads)
    adapter = _check_adapter(ss)
    if adapter is not None:
        findings.append(adapter)
    if adapter is None or adapter.ok:
        findings.append(_check_index(ss, repair))
    else:
        findings.append(Finding("index", False, "not checked: its vectors come from the adapter"))
    findings.extend(_check_models(ss.home, repair))
    return findings


def _check_database(url: str) -> Finding:
    """Opens the database; on SQLite runs ``PRAGMA integrity_check`` (every page, index and
    constraint). Never repaired: it is the one copy of the catalogue and the events. A bare
    engine, not a CatalogStore, so that the check changes nothing (no column migration)."""
    try:
        engine = make_engine(url)
        try:
            if engine.dialect.name != "sqlite":
                return Finding("database", True, f"{engine.url.render_as_string()} is reachable "
                               "(its integrity is the database server's job)")
            with engine.connect() as conn:
                problems = [row[0] for row in conn.exec_driver_sql("PRAGMA integrity_check")]
        finally:
            engine.dispose()
        path = Path(engine.url.database or "")
        if problems != ["ok"]:
            reason = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
            return Finding("database", False, str(damaged("database", path, reason, DATABASE_REPAIR.format(path=path))))
        return Finding("database", True, f"{path} passed the integrity check")
    except StyleSenseError as e:  # the store names the file and the repair
        return Finding("database", False, str(e))
    except SQLAlchemyError as e:  # a database server that cannot be reached, or refuses
        return Finding("database", False, f"cannot open {make_url(url).render_as_string()}: {getattr(e, 'orig', None) or e}")


def _rebuild_config(h: Home, threads: int | None) -> tuple[Config | None, str]:
    """A config for a home whose config.json is lost, from what the home holds, and what was
    recovered; (None, why) when the stored features' recipe cannot be confirmed."""
    config = Config(recommender=_newest_model(h))
    recipes = [(e, config.image_fit, config.pooling, False) for e in EMBEDDERS]
    recipes += [(e, LEGACY_RECIPE["image_fit"], LEGACY_RECIPE["pooling"], False) for e in EMBEDDERS]
    if (h.root / ADAPTER_NAME).exists():
        try:
            adapter = Adapter.load(h.root / ADAPTER_NAME)
        except DamagedFile as e:
            return None, f"the home's adapter is damaged too ({e.reason})"
        config.adapter = ADAPTER_NAME
        # An adapter only works on the recipe it was trained on: the only candidates.
        recipes = list(dict.fromkeys(_recipe_of(adapter_recipe(adapter, e)) for e in EMBEDDERS))
    defaults = "other settings (index kind, columns, event weights) are back to their defaults"
    store = CatalogStore(h.database_url(config))
    pks, raw = store.features()
    if config.adapter is None and len(pks) and raw.shape[1] == CNN_DIM + COLOUR_DIM:  # `init --colour-features`
        recipes = [(*r[:3], True) for r in recipes]
    if not len(pks):
        config.embedder, config.image_fit, config.pooling, config.colour_features = recipes[0]
        return config, f"no item has features yet, so any embedder is safe: {_recipe(recipes[0])}; {defaults}"
    photos = _unchanged_photos(store, pks, raw)
    if not photos:
        return None, ("no stored photo is still on disk unchanged, so nothing shows which embedder made the "
                      "features: restore config.json from a backup")
    paths, stored = [p for p, _ in photos], normalize(np.stack([f for _, f in photos]))
    for recipe in recipes:
        name, fit, pooling, colour = recipe
        embedder = make_embedder(name, cache_dir=h.models_dir, threads=threads, fit=fit, pooling=pooling,
                                 colour=colour)
        feats, failed = embedder.embed_files(paths)
        if not failed and float((normalize(feats) * stored).sum(axis=1).min()) >= RECIPE_MATCH:
            config.embedder, config.image_fit, config.pooling, config.colour_features = recipe
            return config, (f"{_recipe(recipe)}, confirmed by re-embedding {len(paths)} stored "
                            f"photos; {defaults}")
    return None, (f"none of the known recipes ({', '.join(_recipe(r) for r in recipes)}) reproduces the stored "
                  "features: restore config.json from a backup")


Recipe = tuple[str, str, str, bool]  # embedder, image fit, pooling, colour descriptor


def _recipe_of(recipe: dict[str, str]) -> Recipe:
    return recipe["embedder"], recipe["image_fit"], recipe["pooling"], "colour" in recipe


def _recipe(recipe: Recipe) -> str:
    name, fit, pooling, colour = recipe
    return f"embedder {name} ({fit} fit, {pooling} pooling{', colour descriptor' if colour else ''})"


def _unchanged_photos(store: CatalogStore, pks: np.ndarray, raw: np.ndarray) -> list[tuple[Path, np.ndarray]]:
    """Up to RECIPE_PHOTOS (photo path, stored features) whose file still has the stored hash."""
    by_pk = store.items_by_pk(pks[:RECIPE_CANDIDATES])
    hashes = store.hashes()
    found: list[tuple[Path, np.ndarray]] = []
    for pk, feats in zip(pks[:RECIPE_CANDIDATES].tolist(), raw):
        item = by_pk.get(pk)
        if item is None or not item.image_path:
            continue
        try:
            if content_hash(item.image_path) != hashes[item.item_id][0]:
                continue
        except OSError:
            continue
        found.append((Path(item.image_path), feats))
        if len(found) == RECIPE_PHOTOS:
            break
    return found


def _newest_model(h: Home) -> str | None:
    """The model `recommend` used by default: the last one trained."""
    saved = sorted(h.recommenders_dir.glob("*.npz"), key=lambda p: p.stat().st_mtime)
    return saved[-1].stem if saved else None


def _check_adapter(ss: StyleSense) -> Finding | None:
    """The adapter loads and was trained on the features this home makes; None without one.
    Never repaired: it cannot be rebuilt (the home does not know its labels or its seed)."""
    if not ss.config.adapter:
        return None
    try:
        adapter = ss.adapter
    except StyleSenseError as e:
        return Finding("adapter", False, str(e))
    assert adapter is not None
    path = ss.home.root / ss.config.adapter
    recipe = adapter_recipe(adapter, ss.config.embedder)
    if recipe != ss.feature_recipe:
        return Finding("adapter", False, (
            f"adapter file {path} was trained on {_recipe(_recipe_of(recipe))} features, but this home makes "
            f"{_recipe(_recipe_of(ss.feature_recipe))} features: copy back the adapter this home was made with"))
    return Finding("adapter", True, f"{path} loads and matches the home's {_recipe(_recipe_of(recipe))}")


def _check_index(ss: StyleSense, repair: bool) -> Finding:
    """The index (its file, or its table or collection in a database) opens and holds exactly
    the searchable items, in the home's dimension; ``repair`` finishes an interrupted update or
    rebuilds it, then checks again."""
    found = _inspect_index(ss)
    if found.action is None:
        return Finding("index", True, found.message)
    if found.fix is None:
        return Finding("index", False, f"{found.message}: {found.action}")
    if not repair:
        return Finding("index", False, f"{found.message}: {REPAIR} to {found.action}")
    found.fix()
    after = _inspect_index(ss)
    if after.action is not None:
        return Finding("index", False, f"{found.message}; after trying to {found.action}: {after.message}")
    return Finding("index", True, f"{found.message}; repaired: {after.message}", repaired=True)


class _IndexVerdict(NamedTuple):
    message: str  # what the index is like
    action: str | None = None  # what would put it right; None: it is right
    fix: Callable[[], object] | None = None  # does ``action``; None: nothing the doctor may do


def _inspect_index(ss: StyleSense) -> _IndexVerdict:
    """Compare the index with the database's bookkeeping of what it must hold.

    Searchable items the index has not reached yet (``only_unindexed``) and items it must still
    drop (``unsearchable_pks``) are an interrupted update, which ``sync_index`` finishes;
    anything else missing or extra, or another dimension than the home's vectors, is a mismatch
    that only a rebuild fixes. The same checks for an index file and a database index."""
    searchable, raw = ss.store.features(searchable=True)
    rebuild = (f"rebuild it from the stored features of the {len(searchable)} searchable items "
               "(`stylesense index build`)")
    opened = _open_index(ss, len(searchable), rebuild)
    if isinstance(opened, _IndexVerdict):
        return opened
    name, dim_held, ids = opened
    if not len(searchable):
        if not len(ids):
            return _IndexVerdict(f"{name} is empty, like the searchable catalogue")
        return _IndexVerdict(
            f"{name} holds {len(ids)} items but the database has no searchable item",
            "was the database emptied or replaced? Restore it from a backup "
            "(`stylesense index build` would match the index to it instead)")
    pending, dropping = ss.store.features(only_unindexed=True)[0], ss.store.unsearchable_pks()
    missing = np.setdiff1d(np.setdiff1d(searchable, pending), ids)
    extra = np.setdiff1d(ids, np.union1d(searchable, dropping))
    dim = ss.to_vectors(raw[:1]).shape[1]
    if dim_held != dim:
        return _IndexVerdict(f"{name} holds {dim_held}-d vectors, the home makes {dim}-d ones", rebuild, ss.build_index)
    if len(missing) or len(extra):
        return _IndexVerdict(f"{name} does not match the database: {len(missing)} searchable items "
                             f"are missing from it, {len(extra)} of its ids are not searchable", rebuild, ss.build_index)
    if len(pending) or len(dropping):
        return _IndexVerdict(f"an update of {name} was interrupted ({len(pending)} items still to add, "
                             f"{len(dropping)} to drop)", "finish it", ss.sync_index)
    return _IndexVerdict(f"{name} holds the {len(searchable)} searchable items")


def _open_index(ss: StyleSense, n_searchable: int, rebuild: str) -> tuple[str, int, np.ndarray] | _IndexVerdict:
    """(how messages name the index, its dimension, every id it holds), or the verdict when it
    cannot be read: no index, a damaged file, a database server that cannot be reached."""
    try:
        store = database_store(ss.home, ss.config, ss.store.engine)
    except StyleSenseError as e:  # a configuration no index can live in
        return _IndexVerdict(f"the home's index cannot be opened ({e})", "correct the home's configuration")
    if store is not None:
        try:
            if not store.exists():
                if not n_searchable:
                    return _IndexVerdict(f"no {store.location}: nothing is searchable yet")
                return _IndexVerdict(f"no {store.location}, though {n_searchable} items are searchable", rebuild,
                                     ss.build_index)
            index = store.current()
            return store.location, index.dim, index.ids()
        except store.client_errors as e:
            setting = "database_url" if store.kind == "pgvector" else "milvus_uri"
            reason = getattr(e, "orig", None) or getattr(e, "message", None) or e
            return _IndexVerdict(f"{store.location} cannot be read ({reason})",
                                 f"start its server, or correct the home's {setting} in {ss.home.config_path}; "
                                 "then `stylesense index build` if it is gone")
    path = ss.home.index_path
    if not path.exists():
        if not n_searchable:
            return _IndexVerdict("no index file: nothing is searchable yet")
        return _IndexVerdict(f"no index file {path}, though {n_searchable} items are searchable", rebuild,
                             ss.build_index)
    try:
        index = load_index(path)
    except DamagedFile as e:
        message = f"index file {path} is damaged ({e.reason})"
        if n_searchable:
            return _IndexVerdict(message, rebuild, ss.build_index)
        return _IndexVerdict(message, "move it aside (nothing is searchable to rebuild it from)",
                             lambda: _move_aside(path))
    return f"index file {path}", index.dim, index.ids()


def _check_models(h: Home, repair: bool) -> list[Finding]:
    """Every saved model loads; ``repair`` moves an unloadable one aside for a retrain (its
    training parameters are in the damaged file, so the doctor does not guess them)."""
    findings = []
    for path in sorted(h.recommenders_dir.glob("*.npz")):
        name = f"model {path.stem}"
        try:
            load_recommender(path)
        except DamagedFile as e:
            error = str(damaged("model file", path, e.reason, f"retrain it with `stylesense train --model {path.stem}`"))
            if repair:
                findings.append(Finding(name, True, f"{error}; moved it aside to {_move_aside(path)}", repaired=True))
            else:
                findings.append(Finding(name, False, error))
            continue
        findings.append(Finding(name, True, f"{path} loads"))
    return findings


def _move_aside(path: Path) -> Path:
    """Rename a damaged file to ``NAME.damaged`` (``.damaged.1``, ... if taken): out of the way
    of its rebuild, kept for whoever wants to look at it."""
    target = path.with_name(path.name + ".damaged")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged.{n}")
    os.replace(path, target)
    return target
