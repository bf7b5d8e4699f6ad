"""The workspace ("home") folder: everything a run creates lives in one place.

A home holds the catalogue database, the cached ONNX model, the index file, import reports and a
small ``config.json`` recording which embedder and adapter built the vectors. Keeping that record
next to the vectors is what stops a later import from mixing vectors of two different models.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from stylesense.atomic import atomic_write
from stylesense.errors import Damaged, InvalidInput

DEFAULT_HOME = "stylesense-home"
CONFIG_NAME = "config.json"


REPAIR = "run `stylesense doctor --repair`"
_CONFIG_REPAIR = (f"restore it from a backup, or {REPAIR} to rewrite it from what the home holds "
                  "(it checks which embedder made the stored features)")


def damaged(what: str, path: Path, reason: str, repair: str) -> Damaged:
    """The one-line error for a damaged file of the home: which file, what is wrong with it,
    and what rebuilds or replaces it (a traceback names none of the three)."""
    return Damaged(f"{what} {path} is damaged ({reason}): {repair}")


# The image recipe of homes (and adapters) made before it was recorded: square letterbox,
# mean pooling. They keep embedding that way, so their vectors stay comparable.
LEGACY_RECIPE = {"image_fit": "square", "pooling": "mean"}


@dataclass
class Config:
    """What built this home's vectors; changing any of it means re-embedding."""

    embedder: str = "lite0"
    image_fit: str = "letterbox"  # how photos become the CNN's input (vision.embedder.FITS)
    pooling: str = "gem"  # how its last feature map becomes a vector (vision.embedder.POOLINGS)
    # Each photo's colour descriptor (vision.colour) stored after its CNN features, for a
    # steerable adapter's colour part to read (`init --colour-features`, or an adapter trained so).
    colour_features: bool = False
    # Inference precision on every machine that embeds for this home (vision.embedder.PRECISIONS).
    # Not part of the vectors' recipe: each precision's features retrieve alike (docs/vision.md).
    # int8 calibrates on the first import of at least MIN_CALIBRATION_PHOTOS photos.
    precision: str = "auto"
    adapter: str | None = None  # file name inside the home, or None for off-the-shelf features
    index_kind: str = "auto"  # an in-memory kind (index file), or pgvector / milvus (stylesense.index.store)
    database_url: str | None = None  # None: SQLite file inside the home
    milvus_uri: str | None = None  # index milvus: a Milvus server URI or Lite file; None: index/milvus.db in the home
    price_column: str = "price"
    # Column shared by the variants of one product (same cut, other colours; H&M's
    # product_code): `evaluate retrieval` measures same-product recall by it, the dashboards
    # count repurchases of a group by it. None: the catalogue has no such column.
    group_column: str | None = None
    stock_column: str = "in_stock"  # 0 / false / no / sold out there: never recommended
    # Recommend only products of the catalogue (live, shown, in stock). False: products
    # known only from events stay recommendable; removed and hidden ones never are.
    catalogue_only: bool = False
    event_weights: dict[str, float] | None = None  # None: recommenders.DEFAULT_WEIGHTS
    # Whether recommendations skip what the shopper already has. None: exclude; an events
    # preset sets the choice measured on its data set (see docs/recommenders.md).
    exclude_seen: bool | None = None
    recommender: str | None = None  # model `recommend` uses by default: the last one trained
    # Gorse FeedbackType -> event type, beside the defaults (stylesense.gorse.feedback_types).
    gorse_feedback_types: dict[str, str] | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, path: str | os.PathLike | None = None) -> "Home":
        """``path``, else ``$STYLESENSE_HOME``, else ``./stylesense-home``; a folder (it need
        not exist yet), never a file."""
        chosen = path or os.environ.get("STYLESENSE_HOME") or DEFAULT_HOME
        root = Path(chosen).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise InvalidInput(f"home {root} is a file, not a folder: give --home (or $STYLESENSE_HOME) "
                            "a folder; a missing one is created")
        return cls(root)

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def index_path(self) -> Path:
        return self.root / "index" / "catalog.ssidx"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def recommenders_dir(self) -> Path:
        return self.root / "recommenders"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def exists(self) -> bool:
        return self.config_path.exists()

    @property
    def database_path(self) -> Path:
        """The SQLite file used when the config names no database URL."""
        return self.root / "stylesense.db"

    def load_config(self) -> Config:
        """The home's config (defaults for a new home); Damaged naming the file when it is
        not one this version wrote."""
        if not self.config_path.exists():
            return Config()
        try:
            data = json.loads(self.config_path.read_bytes())
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise damaged("config", self.config_path, f"not valid JSON: {e}", _CONFIG_REPAIR) from None
        if not isinstance(data, dict):
            raise damaged("config", self.config_path, "not a JSON object", _CONFIG_REPAIR)
        unknown = sorted(set(data) - {f.name for f in fields(Config)})
        if unknown:
            raise damaged("config", self.config_path, f"unknown setting(s) {', '.join(unknown)}", _CONFIG_REPAIR)
        return Config(**{**LEGACY_RECIPE, **data})

    def save_config(self, config: Config) -> None:
        """Write the whole config (a new home's; changes go through ``update_config``)."""
        text = json.dumps(asdict(config), indent=2) + "\n"
        atomic_write(self.config_path, lambda f: f.write(text.encode()))

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Hold the home's ``name`` lock (a lock file, ``flock``): one holder at a time across
        processes and threads, for read-modify-write of a file of the home. Not re-entrant."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{name}.lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def update_config(self, change: Callable[[Config], None]) -> Config:
        """Read the config afresh, ``change`` it, write it back, all under the config lock, so
        that two processes changing different settings both keep their change."""
        with self.locked("config"):
            config = self.load_config()
            change(config)
            self.save_config(config)
        return config

    def database_url(self, config: Config) -> str:
        return config.database_url or f"sqlite:///{self.database_path}"
