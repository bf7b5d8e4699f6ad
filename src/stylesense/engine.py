"""The library's front door: one object per home that imports, indexes, searches and evaluates.

Every surface (CLI now, REST API and web UI later) is a thin layer over :class:`StyleSense`.
Data flows one way: catalogue rows -> raw CNN features (stored) -> search vectors (adapter or
plain L2 normalisation) -> index -> search.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import logging
import math
import shutil
import string
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stylesense.atomic import DamagedFile, atomic_write
from stylesense.catalog.csvtable import BadRow, CsvError, column_types, read_table, typed
from stylesense.catalog.filters import Filters
from stylesense.catalog.store import CatalogStore, Item, Upsert
from stylesense.concurrency import ReadWriteLock, file_stamp
from stylesense.errors import Conflict, Damaged, InvalidInput, NotFound, NotReady
from stylesense.home import LEGACY_RECIPE, REPAIR, Config, Home, damaged
from stylesense.inputs import check_id, id_problem, read_capped, text_problem
from stylesense.index import DATABASE_KINDS, KINDS, make_index
from stylesense.index.filters import Filter, ItemScalars
from stylesense.index.store import IndexStore, open_store, store_key
from stylesense.vision.adapter import Adapter, Steer, normalize
from stylesense.vision.colour import DIM as COLOUR_DIM, VERSION as COLOUR_VERSION

if TYPE_CHECKING:  # the embedder and the image decoder bring PIL: imported where photos are read
    from stylesense.behaviour import Behaviour
    from stylesense.experiments import Experiments
    from stylesense.index.base import VectorIndex
    from stylesense.vision.embedder import Embedder

log = logging.getLogger(__name__)


def _check_precision(precision: str) -> None:
    """``init`` and ``configure`` refuse an unknown precision before the home records it."""
    from stylesense.vision.embedder import PRECISIONS

    if precision not in PRECISIONS:
        raise InvalidInput(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")

ADAPTER_NAME = "adapter.npz"
EMBED_CHUNK = 256
"""Photos embedded between database commits during an import: a crash loses at most this many
(~3 s of CPU at 80 photos/s), and one commit (~1.3 MB of features) costs little next to them."""

MAX_PAGE = 500  # items per page of ``item_page``
_ID_CHUNK = 10_000  # ids per IN (...) query: SQLite allows 32,766 bound values
PHOTOS_DIR = "photos"  # uploaded photos, in the home, by content hash
THUMBNAILS_DIR = "thumbnails"  # thumbnails made by ``photo``, by the photo's content hash and size
THUMBNAIL_SIZES = (16, 1024)  # smallest and largest thumbnail side, px

# Settings `configure` may change on a filled home, and their types.
SETTINGS: dict[str, type] = {"catalogue_only": bool, "exclude_seen": bool, "stock_column": str, "price_column": str,
                             "group_column": str, "gorse_feedback_types": dict, "precision": str}
_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Hit:
    item_id: str
    score: float
    attrs: dict[str, Any]
    image_path: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape every surface answers with. No local path: a server must not show
        its folders, so each surface adds its own link to the photo."""
        return {"item_id": self.item_id, "score": round(self.score, 6), "attrs": self.attrs}


@dataclass
class ImportReport:
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    embedded: int = 0
    bad: list[BadRow] = field(default_factory=list)  # rows not imported
    warnings: list[BadRow] = field(default_factory=list)  # rows imported with a cell left empty
    report_path: Path | None = None  # both kinds, by row

    @property
    def ok(self) -> bool:
        return not self.bad and not self.warnings

    def to_dict(self) -> dict[str, Any]:
        """Counts and problems by row (the report file's path stays local)."""
        counts = {k: getattr(self, k) for k in ("rows", "added", "updated", "unchanged", "embedded")}
        return {**counts, "ok": self.ok, "bad": [b.to_dict() for b in self.bad],
                "warnings": [w.to_dict() for w in self.warnings]}


@dataclass(frozen=True)
class ItemWrite:
    """What ``put_item`` did: the item now, whether it is new, whether its photo was embedded
    (False: no photo given, or the one it had)."""

    item: Item
    created: bool
    embedded: bool

    def to_dict(self) -> dict[str, Any]:
        return {**self.item.to_dict(), "created": self.created, "embedded": self.embedded}


@dataclass(frozen=True)
class ItemPage:
    """One page of the catalogue; ``next_cursor`` asks for the next one (None: this is the last)."""

    items: list[Item]
    next_cursor: str | None


@dataclass(frozen=True)
class Photo:
    """An item's photo, or a thumbnail of it: the bytes, their media type (sniffed from the
    bytes) and a tag that changes exactly when they do (an HTTP ETag)."""

    data: bytes
    media_type: str
    etag: str


class StyleSense:
    """A home folder opened for work. Cheap to create; the CNN and index load on first use.

    One object may serve many threads (a server): searches read the index together while a
    catalogue change updates it alone, and a config or index file that another process
    replaced is read again on the next call, so every worker sees every other's changes."""

    def __init__(self, home: str | Path | None = None, *, threads: int | None = None) -> None:
        self.home = Home.resolve(home)
        self._config: Config = self.home.load_config()
        self._config_stamp = file_stamp(self.home.config_path)
        self.home.root.mkdir(parents=True, exist_ok=True)
        if not self.home.exists():
            if self.home.database_path.exists():  # a home writes its config before its database
                raise Damaged(f"config {self.home.config_path} is missing, though the home holds a database: "
                                f"{REPAIR} to rewrite it from what the home holds, or restore it from a backup")
            self.home.save_config(self._config)
            self._config_stamp = file_stamp(self.home.config_path)
        self._index_lock = ReadWriteLock()  # readers search; a sync changes the index alone
        self._index_store: tuple[tuple, IndexStore] | None = None  # (store_key, store) of the config
        self.store = CatalogStore(self.home.database_url(self.config), self.config.stock_column)
        self.threads = threads
        self._embedder: Embedder | None = None
        self._adapter: Adapter | None = None
        self._behaviour: "Behaviour | None" = None

    # -- set-up ----------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        home: str | Path | None = None,
        *,
        embedder: str = "lite0",
        adapter: Path | None = None,
        index_kind: str = "auto",
        database_url: str | None = None,
        price_column: str = "price",
        stock_column: str = "in_stock",
        catalogue_only: bool = False,
        milvus_uri: str | None = None,
        colour_features: bool = False,
        precision: str = "auto",
    ) -> "StyleSense":
        """Create (or re-configure an empty) home. The embedder and adapter are fixed once items
        exist, because vectors from two models are not comparable. ``colour_features``: store each
        photo's colour descriptor beside its CNN features (what `adapt --colour` trains a
        steerable adapter's colour part on; an adapter trained so sets it itself).
        ``precision``: of the embedder wherever it runs for this home; "int8" is calibrated on the
        photos of the home's first import (of enough photos). ``configure`` changes it later."""
        _check_precision(precision)
        h = Home.resolve(home)
        config = Config(embedder=embedder, index_kind=index_kind, database_url=database_url,
                        price_column=price_column, stock_column=stock_column, catalogue_only=catalogue_only,
                        milvus_uri=milvus_uri, colour_features=colour_features, precision=precision)
        if index_kind not in {"auto", *KINDS, *DATABASE_KINDS}:
            raise InvalidInput(f"unknown index kind {index_kind!r}: auto, {', '.join([*KINDS, *DATABASE_KINDS])}")
        if index_kind == "pgvector" and not (database_url or "").startswith("postgresql"):
            raise InvalidInput("--index pgvector keeps the vectors in the home's Postgres database: "
                               "give --database-url postgresql://...")
        if h.exists():
            old = h.load_config()
            if CatalogStore(h.database_url(old)).count():
                if old.embedder != embedder or bool(adapter) or old.database_url != database_url:
                    raise Conflict(
                        f"{h.root} already holds a catalogue built with embedder {old.embedder!r}"
                        f"{' and an adapter' if old.adapter else ''}; use a new --home to change that"
                    )
                if colour_features and not old.colour_features:
                    raise Conflict(f"{h.root} already holds a catalogue embedded without colour features; "
                                   "use a new --home to add them")
                # its vectors' recipe
                config.image_fit, config.pooling, config.colour_features = old.image_fit, old.pooling, old.colour_features
        h.root.mkdir(parents=True, exist_ok=True)
        if adapter is not None:
            # The adapter was trained on vectors of one image recipe: the home embeds the same way.
            recipe = adapter_recipe(Adapter.load(adapter), embedder)
            if recipe["embedder"] != embedder:
                raise InvalidInput(f"{adapter} was trained on {recipe['embedder']!r} features, not {embedder!r}")
            config.image_fit, config.pooling = recipe["image_fit"], recipe["pooling"]
            config.colour_features = "colour" in recipe
            shutil.copyfile(adapter, h.root / ADAPTER_NAME)
            config.adapter = ADAPTER_NAME
        h.save_config(config)
        return cls(h.root)

    @property
    def config(self) -> Config:
        """The home's settings, read again when another process changed the file. Change them
        with ``update_config``, never by assignment: that would be lost, or lose another's."""
        stamp = file_stamp(self.home.config_path)
        if stamp != self._config_stamp:
            self._config, self._config_stamp = self.home.load_config(), stamp
        return self._config

    def update_config(self, change: Callable[[Config], None]) -> Config:
        """Apply ``change`` to the home's config under its lock (see ``Home.update_config``)."""
        self._config = self.home.update_config(change)
        self._config_stamp = file_stamp(self.home.config_path)
        return self._config

    def configure(self, changes: Mapping[str, str]) -> Config:
        """Change the home's settings that need no re-embedding (``SETTINGS``), from text
        values as a command line gives them; a new stock column re-reads every item's stock."""
        parsed: dict[str, Any] = {}
        for key, text in changes.items():
            kind = SETTINGS.get(key)
            if kind is None:
                raise InvalidInput(f"{key!r} cannot be set here; settable: {', '.join(SETTINGS)}")
            value: Any = text.strip()
            if kind is bool:
                if value.lower() not in _BOOLS:
                    raise InvalidInput(f"{key} must be true or false, got {text!r}")
                value = _BOOLS[value.lower()]
            elif kind is dict:  # Gorse feedback type -> event type: star:purchase,like:cart ("": none)
                from stylesense.gorse import parse_feedback_types

                value = parse_feedback_types(value, self.behaviour.weights)
            elif not value:
                raise InvalidInput(f"{key} must not be empty")
            parsed[key] = value
        if "precision" in parsed:
            _check_precision(parsed["precision"])
        self.update_config(lambda config: [setattr(config, k, v) for k, v in parsed.items()])
        if "precision" in parsed:
            self._embedder = None  # the next photo is embedded at the new precision
            self._calibrate(self._stored_photos())
        if "stock_column" in changes:
            self.store.set_stock_column(self.config.stock_column)
            if self.config.index_kind in DATABASE_KINDS:  # every item's in_stock field may differ
                self.store.reset_indexed()
                self.sync_index()
        return self.config

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from stylesense.vision.embedder import make_embedder

            self._embedder = make_embedder(
                self.config.embedder, cache_dir=self.home.models_dir, threads=self.threads,
                fit=self.config.image_fit, pooling=self.config.pooling, colour=self.config.colour_features,
                precision=self.config.precision,
            )
        return self._embedder

    @property
    def adapter(self) -> Adapter | None:
        if self._adapter is None and self.config.adapter:
            path = self.home.root / self.config.adapter
            try:
                self._adapter = Adapter.load(path)
            except DamagedFile as e:  # its vectors cannot be rebuilt without it: say where it came from
                raise damaged("adapter file", path, e.reason, "copy back the adapter file this home was made "
                              f"with (`stylesense init --adapter FILE` copied it to {path})") from None
        return self._adapter

    @property
    def feature_recipe(self) -> dict[str, str]:
        """What the raw vectors are: embedder, image fit and pooling, and the colour descriptor's
        version where one follows the CNN features (recorded in adapters)."""
        c = self.config
        colour = {"colour": f"v{COLOUR_VERSION}"} if c.colour_features else {}
        return {"embedder": c.embedder, "image_fit": c.image_fit, "pooling": c.pooling, **colour}

    @property
    def embedder_name(self) -> str:
        return self.config.embedder + ("+adapter" if self.config.adapter else "")

    @property
    def behaviour(self) -> "Behaviour":
        """Events and recommenders of this home (see :mod:`stylesense.behaviour`)."""
        if self._behaviour is None:
            from stylesense.behaviour import Behaviour

            self._behaviour = Behaviour(self)
        return self._behaviour

    @cached_property
    def experiments(self) -> "Experiments":
        """A/B experiments of this home, and the one way to serve a shopper's recommendations
        through them (see :mod:`stylesense.experiments`). Stateless beyond the database: two
        threads racing here make two, of which one is kept."""
        from stylesense.experiments import Experiments

        return Experiments(self)

    def to_vectors(self, raw: np.ndarray) -> np.ndarray:
        """Raw features -> the vectors the index holds."""
        return self.adapter.transform(raw) if self.adapter is not None else self.off_the_shelf(raw)

    def off_the_shelf(self, raw: np.ndarray) -> np.ndarray:
        """Raw features -> unit CNN features, without the colour descriptor where the home has one."""
        return normalize(raw[:, : raw.shape[1] - self.colour_dim])

    @property
    def colour_dim(self) -> int:
        """Columns of the raw features that are the photo's colour descriptor (0: none)."""
        return COLOUR_DIM if self.config.colour_features else 0

    # -- catalogue -------------------------------------------------------------------
    def import_catalog(
        self,
        csv_path: str | Path,
        images: str | None = None,
        *,
        id_column: str | None = None,
        preset: str | None = None,
        encoding: str = "utf-8",
        progress: Callable[[int, int], None] | None = None,
        allowed_roots: Sequence[Path] | None = None,
    ) -> ImportReport:
        """Upsert the CSV's rows by id; embed only new or changed photos; update the index.

        ``images`` (the photo template) and ``id_column`` (default ``id``) override those of
        ``preset`` (a public catalogue's layout, :data:`stylesense.catalog.presets.PRESETS`),
        which also records its price and product-group columns as the home's settings where
        the CSV has them and the home has no choice of its own.

        Raises CsvError for whole-file problems (nothing is imported); row problems go into the
        report, and every valid row is imported. A cell that is not a number in a numeric
        column (the price column always is) is left empty and reported as a warning.

        ``allowed_roots``: the folders the CSV and its photos must lie in, after symlinks are
        resolved. The CLI reads wherever its user points; an API or web app passes its upload
        folders, so that a row naming ``/etc/passwd`` (or a link to it) is a bad row, unread."""
        from stylesense.catalog.presets import catalog_preset
        from stylesense.vision.images import content_hash

        layout = None if preset is None else catalog_preset(preset)
        images = images or (layout.images if layout else None)
        if not images:
            raise InvalidInput("give the photo path template (--images, e.g. images/{id}.jpg) or a --preset")
        id_column = id_column or (layout.id_column if layout else "id")
        csv_path = Path(csv_path)
        roots = None if allowed_roots is None else [Path(r).resolve() for r in allowed_roots]
        if roots is not None and not _inside(csv_path.resolve(), roots):
            raise CsvError(f"{csv_path}: outside the allowed folders")
        table = read_table(csv_path, id_column, encoding)
        _check_template(images, table.columns)
        if layout is not None:
            self._record_layout(layout.settings(), table.columns)
        types = column_types(table, numeric=[self.config.price_column])
        report = ImportReport(rows=len(table.rows) + len(table.bad), bad=list(table.bad))
        known = self.store.hashes()

        pending: list[tuple[int, str, dict[str, Any], Path, str]] = []  # rows needing a CNN pass
        changes: list[Upsert] = []
        for line, values in table.rows:
            item_id = values[id_column]
            attrs, problems = typed(values, types, skip={id_column})
            report.warnings.extend(BadRow(line, item_id, problem) for problem in problems)
            try:
                named = images.format(**values)
                path = (csv_path.parent / named).resolve()
                if roots is not None and not _inside(path, roots):
                    report.bad.append(BadRow(line, item_id, f"image {named!r} is outside the allowed folders"))
                    continue
                digest = content_hash(path)
            except (ValueError, IndexError) as e:
                report.bad.append(BadRow(line, item_id, f"image path: {e}"))
                continue
            except FileNotFoundError:
                report.bad.append(BadRow(line, item_id, f"file not found: {path}"))
                continue
            except OSError as e:
                report.bad.append(BadRow(line, item_id, f"cannot read {path}: {e.strerror or e}"))
                continue
            old = known.get(item_id)
            if old is None or old[0] != digest:
                pending.append((line, item_id, attrs, path, digest))
            elif old[1] != attrs or old[2] != str(path):
                changes.append(Upsert(item_id, attrs, str(path), digest, None))
            else:
                report.unchanged += 1

        report.added, report.updated = self._upsert(changes)  # metadata-only changes
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, len(pending))

        self._calibrate([p[3] for p in pending])
        # Committed chunk by chunk: a process killed mid-import keeps the photos embedded so
        # far, and the next import skips them (their hashes match) instead of starting over.
        for start in range(0, len(pending), EMBED_CHUNK):
            chunk = pending[start : start + EMBED_CHUNK]
            feats, failed = self.embedder.embed_files([p[3] for p in chunk], progress=tick)
            embedded: list[Upsert] = []
            for i, (line, item_id, attrs, path, digest) in enumerate(chunk):
                if i in failed:
                    report.bad.append(BadRow(line, item_id, failed[i]))
                else:
                    embedded.append(Upsert(item_id, attrs, str(path), digest, feats[i]))
            added, updated = self.store.upsert(embedded)
            report.added, report.updated = report.added + added, report.updated + updated
            report.embedded += len(embedded)
        self.sync_index()
        report.bad.sort(key=lambda b: b.row)
        if report.bad or report.warnings:
            problems = sorted(report.bad + report.warnings, key=lambda b: b.row)
            report.report_path = self._write_bad_rows(csv_path, problems)
        return report

    def _record_layout(self, settings: Mapping[str, str], columns: Sequence[str]) -> None:
        """Record a preset's column settings where the CSV has the column and the home's
        setting is still its default (no choice of the home's own), under the config lock."""
        defaults = Config()
        wanted = {key: column for key, column in settings.items() if column in columns}

        def change(config: Config) -> None:
            for key, column in wanted.items():
                if getattr(config, key) == getattr(defaults, key):
                    setattr(config, key, column)

        if any(getattr(self.config, key) != column for key, column in wanted.items()):
            self.update_config(change)

    def remove_items(self, item_ids: Sequence[str]) -> list[str]:
        """Remove items from the catalogue and the index; returns the ids that existed. No
        model recommends them again, although events keep naming them."""
        removed = self.store.mark_removed(item_ids)
        self.sync_index()
        return removed

    def set_hidden(self, item_ids: Sequence[str], hidden: bool = True) -> list[str]:
        """Hide items (out of search and every recommendation, kept in the catalogue) or show
        them again; returns the ids that exist."""
        found = self.store.set_hidden(item_ids, hidden)
        self.sync_index()
        return found

    def _upsert(self, changes: Sequence[Upsert]) -> tuple[int, int]:
        """The catalogue's upsert. A database index stores the filter fields beside the vectors,
        so items whose metadata alone changed are marked for the next sync to write again."""
        counts = self.store.upsert(changes)
        same_photo = [c.item_id for c in changes if c.features is None]
        if same_photo and self.config.index_kind in DATABASE_KINDS:
            self.store.unindex(np.array([it.pk for it in self.store.items(same_photo)], dtype=np.int64))
        return counts

    def items(self, item_ids: Sequence[str] | None = None) -> list[Item]:
        return self.store.items(item_ids)

    def item(self, item_id: str) -> Item:
        """One live item (hidden ones too: the back office still sees them)."""
        found = self.store.items([check_id(item_id, "item id")])
        if not found:
            raise NotFound(f"no item {item_id!r} in the catalogue")
        return found[0]

    def item_page(self, cursor: str | None = None, n: int = 100, filters: Filters | None = None) -> ItemPage:
        """Up to ``n`` live items after ``cursor`` (None: from the start), in the catalogue's
        order, with the cursor of the next page (None after the last). The catalogue is read
        one page at a time by primary key, never whole, so paging stays cheap however large it
        is and however it changes in between (an item added later comes on a later page).

        With filters, pages are scanned until ``n`` items match; a filter on a column no item
        has is an error, as in search, once a scan from the start has seen every item."""
        if not 1 <= n <= MAX_PAGE:
            raise InvalidInput(f"n must be between 1 and {MAX_PAGE}, got {n}")
        after = _read_cursor(cursor)
        active = filters is not None and filters.active
        batch = max(n + 1, 1000) if active else n + 1
        out: list[Item] = []
        columns: set[str] = set()
        last = after
        while True:
            rows = self.store.items_after(last, batch)
            for it in rows:
                columns.update(it.attrs)
                if not active or filters.matches(it.attrs):  # type: ignore[union-attr]
                    if len(out) == n:  # one more match: there is a next page
                        return ItemPage(out, _cursor(out[-1].pk))
                    out.append(it)
            if len(rows) < batch:
                break
            last = rows[-1].pk
        if active and after == 0:
            filters.check_columns(columns)  # type: ignore[union-attr]
        return ItemPage(out, None)

    def put_item(self, item_id: str, attrs: Mapping[str, Any], photo: bytes | None = None) -> ItemWrite:
        """Create or replace one item's metadata and, given ``photo`` (an encoded file's bytes),
        its photo; searchable when this returns. The upload path of the catalogue, beside the
        CSV import, with the same rules: the photo is decoded as every photo is (byte and pixel
        caps, format sniffed from the bytes), stored under ``HOME/photos/`` by content hash so
        the catalogue keeps a path as for an import, and embedded only when it changed.

        Without a photo, an existing item keeps its own; a new one is listed but not found by
        search until it has one. Hidden stays as it was (back-office state, as a re-import
        keeps it); the stock column of ``attrs`` sets in-stock."""
        check_id(item_id, "item id")
        values = {k: v for k, v in _metadata(attrs, self.config.price_column).items() if v is not None}
        features: np.ndarray | None = None
        stored: tuple[str, str] | None = None  # (path, hash) of a new photo
        if photo is not None:
            digest = hashlib.sha256(photo).hexdigest()
            before = self.store.hashes([item_id]).get(item_id)
            if before is None or before[0] != digest:  # embedding waits for no lock
                features, path = self._embed_upload(photo, digest)
                stored = (str(path), digest)
        with self.home.locked("items"):  # read-modify-write of one row: one writer at a time
            old = self.store.hashes([item_id]).get(item_id)
            path_hash = stored or ((old[2], old[0]) if old is not None else (None, None))
            self._upsert([Upsert(item_id, values, path_hash[0], path_hash[1], features)])
        self.sync_index()
        return ItemWrite(self.item(item_id), created=old is None, embedded=features is not None)

    def _embed_upload(self, photo: bytes, digest: str) -> tuple[np.ndarray, Path]:
        """Raw features of an uploaded photo, and where its bytes are now kept (atomically,
        named by ``digest``, so the same photo uploaded twice is one file)."""
        from stylesense.vision.images import load_image, media_type

        image = load_image(photo, draft=self.embedder.image_size)  # decoded as an import decodes
        kind = media_type(photo)
        assert kind is not None  # load_image accepted the bytes, so their format is known
        features = self.embedder.embed_batch([image])[0]
        path = self.home.root / PHOTOS_DIR / f"{digest}.{kind[1]}"
        if not path.exists():
            atomic_write(path, lambda f: f.write(photo))
        return features, path

    def patch_item(self, item_id: str, attrs: Mapping[str, Any] | None = None, *,
                   hidden: bool | None = None) -> Item:
        """Change some of an item's metadata and/or hide or show it; photo and features stay.
        ``attrs`` is merged into the item's metadata (a JSON merge patch: a column set to None
        is removed), so two clients changing different columns both keep their change."""
        check_id(item_id, "item id")
        changes = _metadata(attrs or {}, self.config.price_column)
        with self.home.locked("items"):
            old = self.store.hashes([item_id]).get(item_id)
            if old is None:
                raise NotFound(f"no item {item_id!r} in the catalogue")
            if changes:
                merged = {k: v for k, v in {**old[1], **changes}.items() if v is not None}
                self._upsert([Upsert(item_id, merged, old[2], old[0], None)])
        self.sync_index()  # a database index's filter fields
        if hidden is not None:
            self.set_hidden([item_id], hidden)
        return self.item(item_id)

    def photo(self, item_id: str, size: int | None = None) -> Photo:
        """An item's photo as stored, or with ``size`` a JPEG whose longest side is at most
        ``size`` px: made once per photo and size, then served from ``HOME/thumbnails/``
        (named by the photo's content hash, so a changed photo gets new thumbnails)."""
        from stylesense.vision.images import MAX_FILE_BYTES, ImageError, media_type, thumbnail_jpeg

        if size is not None and not THUMBNAIL_SIZES[0] <= size <= THUMBNAIL_SIZES[1]:
            raise InvalidInput(f"thumbnail size must be {THUMBNAIL_SIZES[0]}..{THUMBNAIL_SIZES[1]} px, got {size}")
        item = self.item(item_id)
        if item.image_path is None:
            raise NotFound(f"item {item_id!r} has no photo")
        unusable = NotFound(f"the photo of item {item_id!r} is missing or no longer an image; "
                            "import or upload it again")  # the path stays on the server
        try:
            data = read_capped(item.image_path, MAX_FILE_BYTES)
        except OSError:
            raise unusable from None
        digest = hashlib.sha256(data).hexdigest()
        if size is None:
            kind = media_type(data)
            if kind is None:
                raise unusable
            return Photo(data, kind[0], digest)
        path = self.home.root / THUMBNAILS_DIR / f"{digest}-{size}.jpg"
        try:
            return Photo(path.read_bytes(), "image/jpeg", f"{digest}-{size}")
        except FileNotFoundError:
            pass
        try:
            thumb = thumbnail_jpeg(data, size)
        except ImageError:
            raise unusable from None
        atomic_write(path, lambda f: f.write(thumb))
        return Photo(thumb, "image/jpeg", f"{digest}-{size}")

    def _calibrate(self, photos: list[Path]) -> None:
        """An int8 home's first import of enough photos calibrates its embedder (the quantised
        model is kept in the home's models folder); until then it embeds at "auto" precision."""
        from stylesense.vision.quantize import MIN_CALIBRATION_PHOTOS

        embedder = self.embedder
        if not embedder.calibration_needed or len(photos) < MIN_CALIBRATION_PHOTOS:
            return
        try:
            embedder.calibrate(photos)
        except InvalidInput as e:  # too few readable photos: the next import tries again
            log.warning("int8 calibration postponed: %s", e)

    def _stored_photos(self) -> list[Path]:
        """A seeded sample of the catalogue's photo files (enough to calibrate on, some may be gone)."""
        from stylesense.vision.quantize import CALIBRATION_PHOTOS

        pks, _ = self.store.features()
        sample = np.random.default_rng(0).permutation(pks)[: 2 * CALIBRATION_PHOTOS]
        return [Path(item.image_path) for item in self.store.items_by_pk(sample).values() if item.image_path]

    def _write_bad_rows(self, csv_path: Path, bad: list[BadRow]) -> Path:
        self.home.reports_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        out = self.home.reports_dir / f"import-{csv_path.stem}-{stamp}.csv"
        with out.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["row", "id", "reason"])
            w.writerows((b.row, b.item_id, b.reason) for b in bad)
        return out

    # -- index -----------------------------------------------------------------------
    def index(self) -> VectorIndex:
        """The home's index: read again when another process replaced the file, and brought
        up to date first if an earlier run was interrupted."""
        store = self._indexes()
        index = store.current()
        if store.fresh and self.store.index_behind():
            self.sync_index()
            index = store.current()
        return index

    @property
    def has_index(self) -> bool:
        """Whether the home has a search index, wherever it lives (a file, pgvector, Milvus)."""
        return self._indexes().exists()

    def _indexes(self) -> IndexStore:
        """Where the index lives (stylesense.index.store), as the config says now."""
        key = store_key(self.config)
        current = self._index_store
        if current is None or current[0] != key:
            store = open_store(self.home, self.config, self._matching_pks, self.store.engine)
            current = self._index_store = (key, store)
        return current[1]

    def _matching_pks(self, filters: Filters) -> np.ndarray:
        """The in-memory kinds' filter resolver: pks of the live items passing ``filters``."""
        return np.array([it.pk for it in self.matching_items(filters)], dtype=np.int64)

    def _scalars(self, index: VectorIndex, pks: np.ndarray) -> list[ItemScalars] | None:
        """The filter fields a database index stores with the vectors (None for in-memory kinds)."""
        if index.kind in KINDS:
            return None
        by_pk = self.store.items_by_pk(pks)
        return [ItemScalars.of(by_pk[int(p)].attrs, by_pk[int(p)].in_stock) for p in pks]

    def build_index(self, kind: str | None = None) -> VectorIndex:
        """Full rebuild from the stored features (e.g. to change the index kind)."""
        with self.home.locked("index"):  # one writer of the index file at a time, across processes
            return self._build_index(kind)

    def _build_index(self, kind: str | None) -> VectorIndex:
        kind = kind or self.config.index_kind
        pks, raw = self.store.features(searchable=True)
        if not len(pks):
            raise NotReady("the catalogue has no searchable items (empty, or every item hidden): nothing to index")
        vectors = self.to_vectors(raw)
        if kind != self.config.index_kind:
            open_store(self.home, replace(self.config, index_kind=kind), self._matching_pks)  # fails before the change
            self.update_config(lambda config: setattr(config, "index_kind", kind))
        store = self._indexes()
        index = store.create(kind, vectors.shape[1], len(pks))
        index.build(pks, vectors, self._scalars(index, pks))
        store.commit(index)  # searches in flight finish on the old one
        self.store.reset_indexed()
        self.store.mark_indexed(pks)
        self.store.unindex(np.zeros(0, dtype=np.int64))  # tombstones lose their features
        return index

    def sync_index(self) -> None:
        """Bring the index up to date with the catalogue without a full rebuild: add what the
        index lacks (new, re-embedded or shown items, or left over from a crash), drop removed
        and hidden items.

        Under the home's index lock, starting from the index as it is now: the database's record
        of what the index holds is only true of the latest file, whoever wrote it."""
        with self.home.locked("index"):
            store = self._indexes()
            if not store.exists():
                if len(self.store.features(searchable=True)[0]):
                    self._build_index(None)
                return
            removed = self.store.unsearchable_pks()
            pks, raw = self.store.features(only_unindexed=True)
            if not len(removed) and not len(pks):
                return
            index = store.current()
            with self._index_lock.writing():
                if len(removed):
                    index.remove(removed)
                if len(pks):
                    index.add(pks, self.to_vectors(raw), self._scalars(index, pks))
            store.commit(index)
            self.store.mark_indexed(pks)
            self.store.unindex(removed)

    # -- search ----------------------------------------------------------------------
    def search(
        self,
        image: str | Path | bytes | None = None,
        *,
        item: str | None = None,
        k: int = 10,
        filters: Filters | None = None,
        steer: Steer | None = None,
    ) -> list[Hit]:
        """Products most similar to a photo or to a catalogue item (never the item itself).

        Filters are applied inside the index search, so k hits come back whenever k items match.
        ``steer`` (vision.adapter.steering): the score is the weighted sum of the adapter's
        parts' cosines, searched in the same index; with ``vary``, no result shares the query's
        value of that part's column ("same cut, other colours")."""
        if (image is None) == (item is None):
            raise InvalidInput("give exactly one of an image or an item id")
        if k < 1:
            raise InvalidInput("k must be at least 1")
        index = self.index()
        where = Filter.of(filters)
        exclude: int | None = None
        if item is not None:
            found = self.store.items([check_id(item, "item id")])
            if found and found[0].hidden:
                raise NotFound(f"item {item!r} is hidden (stylesense catalog show {item} brings it back)")
            with self._index_lock.reading():
                held, query = index.lookup(np.array([found[0].pk if found else -1], dtype=np.int64))
            if not held[0]:
                raise NotFound(f"no item {item!r} in the catalogue index")
            exclude = found[0].pk
        else:
            from stylesense.vision.images import load_image

            query = self.to_vectors(self.embedder.embed_batch([load_image(image)]))
        if steer is not None:
            query, varied = self._steered(index, query, steer, found[0].attrs if item is not None else None)
            if varied is not None:
                return self._short_checked(self._varied(index, query, k, exclude, where, *varied), k, filters)

        kk = k if exclude is None else k + 1
        with self._index_lock.reading():
            scores, ids = index.search(query.astype(np.float32), kk, where=where)
        pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0 and i != exclude][:k]
        by_pk = self.store.items_by_pk(p for p, _ in pairs)
        hits = [Hit(by_pk[p].item_id, s, by_pk[p].attrs, by_pk[p].image_path) for p, s in pairs if p in by_pk]
        return self._short_checked(hits, k, filters)

    def _steered(self, index: VectorIndex, query: np.ndarray, steer: Steer, attrs: Mapping[str, Any] | None
                 ) -> tuple[np.ndarray, tuple[str, str] | None]:
        """The steered query, and (column, value) that results must not share when the search
        varies a part. The query's value of a part's column is the query item's; for a photo,
        the part's nearest prototype (vision.adapter.Adapter.read), or with an adapter that keeps
        none, the value of the photo's nearest item by that part alone. A weighed part with
        prototypes is pulled towards the query's value's (Adapter.steer)."""
        adapter = self.adapter
        if adapter is None or not adapter.steerable:
            raise InvalidInput("this home's search vectors have no shape and colour parts to steer: train an adapter "
                               "with `stylesense adapt --label TYPE_COLUMN --colour COLOUR_COLUMN --out FILE` and "
                               "make a home with it (`stylesense --home NEW_HOME init --adapter FILE`)")

        def value(part: str) -> str:
            column = adapter.part_column(part)
            if attrs is not None:
                return _label(attrs.get(column))
            read = adapter.read(query, part)
            if read is not None:
                return read[0]
            with self._index_lock.reading():
                _, ids = index.search(adapter.steer(query, {part: 1.0}).astype(np.float32), 1)
            nearest = self.store.items_by_pk([int(ids[0][0])]).get(int(ids[0][0]))
            return _label(nearest.attrs.get(column)) if nearest is not None else ""

        values = {part: value(part) for part, w in steer.weights.items()
                  if w and adapter.prototypes(part) is not None}
        varied = None
        if steer.vary:
            if steer.vary not in values:
                values[steer.vary] = value(steer.vary)
            varied = (adapter.part_column(steer.vary), values[steer.vary])
        pulled = {part: [v] for part, v in values.items()}
        return (adapter.steer(query, steer.weights, pulled) if steer.weights else query), varied

    def _short_checked(self, hits: list[Hit], k: int, filters: Filters | None) -> list[Hit]:
        """``hits``, unless a filtered search found fewer than ``k`` because a filter names a
        column no item has: then a FilterError naming the known ones, the same on every backend
        (a database index cannot tell "no such column" from "nothing matches", and an empty
        answer would hide the typo). A search that found k asks nothing more."""
        if len(hits) < k and Filter.of(filters) is not None and self.store.missing_columns(filters.columns):  # type: ignore[union-attr]
            filters.check_columns(self.store.columns())  # type: ignore[union-attr]
        return hits

    def _varied(self, index: VectorIndex, query: np.ndarray, k: int, exclude: int | None, where: Filter | None,
                column: str, value: str) -> list[Hit]:
        """The k best hits whose ``column`` differs from ``value`` (an empty value excludes
        nothing): searched deeper until k are found or the index is exhausted."""
        kk = 4 * k + 1
        while True:
            with self._index_lock.reading():
                scores, ids = index.search(query.astype(np.float32), min(kk, len(index)), where=where)
            pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0 and i != exclude]
            by_pk = self.store.items_by_pk(p for p, _ in pairs)
            hits = [Hit(by_pk[p].item_id, s, by_pk[p].attrs, by_pk[p].image_path) for p, s in pairs
                    if p in by_pk and not (value and _label(by_pk[p].attrs.get(column)) == value)]
            if len(hits) >= k or kk >= len(index):
                return hits[:k]
            kk *= 4

    def item_vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        """The search vectors of ``item_ids``, (n, dim) float32 rows in their order; a zero row
        for an item the index does not hold (no photo, hidden, removed or unknown), which is
        like nothing. What diversity re-ranking and its evaluation compare products by."""
        index = self.index()
        ids = [str(i) for i in item_ids]
        pks: dict[str, int] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            pks.update((it.item_id, it.pk) for it in self.store.items(ids[start:start + _ID_CHUNK]))
        wanted = np.array([pks.get(i, -1) for i in ids], dtype=np.int64)
        with self._index_lock.reading():
            return index.lookup(wanted)[1]

    def look_alikes(self, item_ids: Sequence[str], k: int, threshold: float) -> dict[str, float]:
        """Products that look like any of ``item_ids``: among each one's ``k`` nearest in the
        index (one batched search), those with a cosine of at least ``threshold``, with their
        highest cosine; never the items themselves. Items the index does not hold find none."""
        index = self.index()
        pks = np.array([it.pk for it in self.store.items(list(item_ids)) if not it.hidden], dtype=np.int64)
        with self._index_lock.reading():
            held, vectors = index.lookup(pks)
            if not held.any():
                return {}
            scores, ids = index.search(vectors[held], min(k + 1, len(index)))
        close = (ids >= 0) & (scores >= threshold) & ~np.isin(ids, pks)
        best: dict[int, float] = {}
        for pk, score in zip(ids[close].tolist(), scores[close].tolist()):
            best[pk] = max(best.get(pk, -1.0), score)
        by_pk = self.store.items_by_pk(best)
        return {by_pk[pk].item_id: score for pk, score in best.items() if pk in by_pk}

    def matching_items(self, filters: Filters) -> list[Item]:
        """Live items whose metadata passes ``filters``; a filter on a column no item has is
        an error (FilterError), since an empty answer would hide the typo."""
        items = self.store.items()
        filters.check_columns({c for it in items for c in it.attrs})
        return [it for it in items if filters.matches(it.attrs)]

    def duplicates(self, threshold: float = 0.97, k: int = 10) -> list[tuple[str, str, float]]:
        """Pairs of catalogue photos whose off-the-shelf features are nearly identical.

        Uses the raw CNN features even when the home has an adapter: an adapter is trained to
        pull colour variants of one product together, which is not what duplicate photos means."""
        pks, raw = self.store.features()
        if len(pks) < 2:
            return []
        vectors = self.off_the_shelf(raw)
        index = make_index("auto", vectors.shape[1], len(pks))
        index.build(pks, vectors)
        scores, ids = index.search(vectors, min(k + 1, len(pks)))
        pairs: dict[tuple[int, int], float] = {}
        for a, row_ids, row_scores in zip(pks, ids, scores):
            for b, s in zip(row_ids, row_scores):
                if b >= 0 and b != a and s >= threshold:
                    key = (int(min(a, b)), int(max(a, b)))
                    pairs[key] = max(pairs.get(key, -1.0), float(s))
        by_pk = self.store.items_by_pk({p for key in pairs for p in key})
        out = [(by_pk[a].item_id, by_pk[b].item_id, s) for (a, b), s in pairs.items()]
        return sorted(out, key=lambda t: (-t[2], t[0], t[1]))

    # -- adaptation and evaluation ---------------------------------------------------
    def _columns(self, pks: np.ndarray, *columns: str | None) -> list[np.ndarray | None]:
        by_pk = self.store.items_by_pk(pks)
        known = {c for it in by_pk.values() for c in it.attrs}
        out: list[np.ndarray | None] = []
        for col in columns:
            if col is None:
                out.append(None)
                continue
            if col not in known:
                raise InvalidInput(f"no item has column {col!r}; known columns: {', '.join(sorted(known))}")
            out.append(np.array([_label(by_pk[int(p)].attrs.get(col)) for p in pks], dtype=object))
        return out

    def train_adapter(
        self,
        labels: Sequence[str],
        group: str | None = None,
        *,
        out: Path,
        progress: Callable[[int, int], None] | None = None,
        colour: Sequence[str] = (),
        mix: float | None = 0.0,
    ) -> Adapter:
        """Train a head on the whole catalogue's labels and save it to ``out``.

        ``colour``: colour columns; given, the adapter is steerable (vision.adapter.steerable_parts:
        a shape part on ``labels`` and the groups, a colour part on these). ``mix``: the share
        of the off-the-shelf vector in the output; None = chosen on a validation part of the
        items whose first label's values the rest lacks (vision.adapter.validated_mix with
        holdout="labels", recorded in the adapter's info; docs/adapter.md)."""
        from stylesense.vision.adapter import steerable_parts, validated_mix

        pks, raw = self.store.features()
        if not len(pks):
            raise NotReady("the catalogue is empty: import items first")
        *label_arrays, groups = self._columns(pks, *labels, *colour, group)
        names = [*labels, *colour]
        parts = steerable_parts([*labels, "groups"], colour, pixel_colour=bool(self.colour_dim)) if colour else None
        args: dict[str, Any] = {"label_names": names, "parts": parts, "threads": self.threads,
                                "colour_dim": self.colour_dim}
        validation = None
        if mix is None:  # validated on held-out values of the first label: what a new kind of product needs
            mix, validation = validated_mix(raw, label_arrays, groups, holdout="labels", **args)
        adapter = Adapter.train(
            raw, label_arrays, groups, raw_weight=mix, **args,
            progress=(lambda epoch, epochs, _loss: progress(epoch, epochs)) if progress else None,
        )
        adapter.info["features"] = self.feature_recipe
        if validation is not None:
            adapter.info["mix_validation"] = validation
        adapter.save(out)
        return adapter

    def evaluate_retrieval(
        self, label: str, group: str | None = None, *, k: int = 10, adapt: bool = False, split: str = "half"
    ) -> dict[str, Any]:
        """Leave-one-out retrieval quality (see evaluation.retrieval). With ``adapt``, an honest
        split: an adapter trained on one side of the items, measured on the other side alone.
        ``split``: "half" (adapt_split: whole products on one side) or "labels" (label_split: a
        third of the label's values held out, so the test side has kinds of product the adapter
        never saw; P@k / mAP@k are then also given for seen and unseen labels, off-the-shelf
        and adapted on the same items).
        ``group``: the same-product column (default: the home's ``group_column``, if any)."""
        from stylesense.evaluation.retrieval import adapt_split, label_split, retrieval_metrics

        if split not in ("half", "labels"):
            raise InvalidInput(f"unknown split {split!r}: half or labels")
        if split != "half" and not adapt:
            raise InvalidInput("--split only applies with --adapt")
        group = group or self.config.group_column

        pks, raw = self.store.features(searchable=True)  # what search can return
        if not len(pks):
            raise NotReady("the catalogue is empty: import items first")
        labels, groups = self._columns(pks, label, group)
        started = time.perf_counter()
        extra: dict[str, Any] = {}
        if adapt:
            if split == "labels":
                train, test, unseen = label_split(pks, labels, groups, seed=0)
            else:
                train, test = adapt_split(pks, groups, seed=0)
            adapter = Adapter.train(
                raw[train], [labels[train]], None if groups is None else groups[train],
                label_names=[label], threads=self.threads, colour_dim=self.colour_dim,
            )
            pks, labels = pks[test], labels[test]
            groups = None if groups is None else groups[test]
            kind = self.index().kind if self.index().kind in KINDS else "auto"  # a throwaway index

            def measure(vectors: np.ndarray, queries: np.ndarray | None = None) -> dict[str, Any]:
                index = make_index(kind, vectors.shape[1], len(pks))
                index.build(pks, vectors)
                return retrieval_metrics(lambda q, kk: index.search(q, kk), pks, vectors, labels, groups, k=k,
                                         queries=queries)

            vectors = adapter.transform(raw[test])
            metrics = measure(vectors)
            if split == "labels":
                unseen = unseen[test]
                off = self.off_the_shelf(raw[test])
                for name, mask in (("seen", ~unseen), ("unseen", unseen)):
                    extra[name] = {
                        "items": int(mask.sum()),
                        "labels": len({str(v) for v in labels[mask]}),
                        "off_the_shelf": _pick(measure(off, mask)),
                        "adapted": _pick(measure(vectors, mask)),
                    }
                extra["off_the_shelf"] = _pick(measure(off))
                extra["train_items"] = int(train.sum())
            embedder = f"{self.config.embedder}+adapter(split)"
        else:
            index = self.index()
            kind = index.kind
            vectors = index.vectors(pks)
            metrics = retrieval_metrics(lambda q, kk: index.search(q, kk), pks, vectors, labels, groups, k=k)
            embedder = self.embedder_name
        return {
            "items": metrics["items"],
            "k": k,
            "label": label,
            "precision_at_k": metrics["precision_at_k"],
            "map_at_k": metrics["map_at_k"],
            "group": group,
            "group_recall_at_k": metrics["group_recall_at_k"] if group else None,
            "embedder": embedder,
            "index": kind,
            **({"split": split} if adapt else {}),
            **extra,
            "seconds": round(time.perf_counter() - started, 2),
        }


def _pick(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scores of a retrieval_metrics result (what a seen/unseen row reports)."""
    return {key: metrics[key] for key in ("precision_at_k", "map_at_k", "group_recall_at_k")}


def adapter_recipe(adapter: Adapter, embedder: str) -> dict[str, str]:
    """The raw-feature recipe (embedder, image fit, pooling) ``adapter`` was trained on;
    adapters from before it was recorded were trained on ``embedder``'s legacy features."""
    return {"embedder": embedder, **LEGACY_RECIPE, **adapter.info.get("features", {})}


_SCALARS = (str, int, float, bool)


def _metadata(attrs: Any, price_column: str) -> dict[str, Any]:
    """``attrs`` checked as an item's metadata: column names as ids are (and no ``=``, which
    a ``COL=VALUE`` filter could not name); values text, numbers, true/false, a flat list of
    those (e.g. categories) or None (no value); the price column a number. Raises InvalidInput
    naming the first bad column."""
    if not isinstance(attrs, Mapping):
        raise InvalidInput(f"metadata must be an object of column -> value, got {type(attrs).__name__}")
    out: dict[str, Any] = {}
    for col, value in attrs.items():
        problem = id_problem(col, "column name")
        if problem is None and "=" in col:
            problem = f"column name {col!r} contains '=' (a COL=VALUE filter could not name it)"
        if problem is None:
            problem = _value_problem(col, value, price_column)
        if problem is not None:
            raise InvalidInput(problem)
        out[col] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def _value_problem(col: str, value: Any, price_column: str) -> str | None:
    """Why ``value`` cannot be column ``col``'s value, or None."""
    if value is None:
        return None
    if col == price_column:  # price filters compare numbers: a text price would never match
        if isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and math.isfinite(value):
            return None
        return f"column {col!r} is the price column: its value must be a finite number, got {value!r}"
    values = value if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(v, _SCALARS) and not (isinstance(v, float) and not math.isfinite(v)) for v in values):
        return (f"column {col!r}: {value!r} is not a value the catalogue holds (text, a finite number, "
                "true/false, or a flat list of those)")
    return next((p for v in values if isinstance(v, str) and (p := text_problem(v, f"column {col!r}'s value"))), None)


def _cursor(pk: int) -> str:
    """An opaque page cursor: clients pass it back, they do not build it."""
    return base64.urlsafe_b64encode(f"pk:{pk}".encode()).decode().rstrip("=")


def _read_cursor(cursor: str | None) -> int:
    """The pk a cursor of ``_cursor`` continues after (0: from the start)."""
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        text = ""
    if not (text.startswith("pk:") and text[3:].isdigit() and len(text) <= 21):  # 18 digits: within int64
        raise InvalidInput(f"cursor {cursor[:40]!r} is not one this catalogue gave: pass next_cursor back unchanged")
    return int(text[3:])


def _label(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether resolved ``path`` lies in one of the resolved ``roots``."""
    return any(path.is_relative_to(root) for root in roots)


def _check_template(template: str, columns: list[str]) -> None:
    """Catch a template naming a missing column before any row is read."""
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    except ValueError as e:
        raise CsvError(f"--images template {template!r} is not a valid format string: {e}") from None
    missing = sorted({n.split(".")[0].split("[")[0] for n in names} - set(columns))
    if missing:
        raise CsvError(
            f"--images template {template!r} names column(s) {', '.join(missing)} that the CSV lacks; "
            f"columns: {', '.join(columns)}"
        )
