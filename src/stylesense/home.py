"""The workspace ("home") folder: everything a run creates lives in one place.

A home holds the catalogue database, the cached ONNX model, the index file, import reports and a
small ``config.json`` recording which embedder and adapter built the vectors. Keeping that record
next to the vectors is what stops a later import from mixing vectors of two different models.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stylesense.atomic import atomic_write

DEFAULT_HOME = "stylesense-home"
CONFIG_NAME = "config.json"


class HomeError(RuntimeError):
    """A home folder that cannot be used as asked (e.g. changing the embedder of a filled home)."""


# The image recipe of homes (and adapters) made before it was recorded: square letterbox,
# mean pooling. They keep embedding that way, so their vectors stay comparable.
LEGACY_RECIPE = {"image_fit": "square", "pooling": "mean"}


@dataclass
class Config:
    """What built this home's vectors; changing any of it means re-embedding."""

    embedder: str = "lite0"
    image_fit: str = "letterbox"  # how photos become the CNN's input (vision.embedder.FITS)
    pooling: str = "gem"  # how its last feature map becomes a vector (vision.embedder.POOLINGS)
    adapter: str | None = None  # file name inside the home, or None for off-the-shelf features
    index_kind: str = "auto"
    database_url: str | None = None  # None: SQLite file inside the home
    price_column: str = "price"
    event_weights: dict[str, float] | None = None  # None: recommenders.DEFAULT_WEIGHTS
    # Whether recommendations skip what the shopper already has. None: exclude; an events
    # preset sets the choice measured on its data set (see docs/recommenders.md).
    exclude_seen: bool | None = None
    recommender: str | None = None  # model `recommend` uses by default: the last one trained
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, path: str | os.PathLike | None = None) -> "Home":
        """``path``, else ``$STYLESENSE_HOME``, else ``./stylesense-home``."""
        chosen = path or os.environ.get("STYLESENSE_HOME") or DEFAULT_HOME
        return cls(Path(chosen).expanduser().resolve())

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

    def load_config(self) -> Config:
        if not self.config_path.exists():
            return Config()
        data = json.loads(self.config_path.read_text())
        return Config(**{**LEGACY_RECIPE, **data})

    def save_config(self, config: Config) -> None:
        text = json.dumps(asdict(config), indent=2) + "\n"
        atomic_write(self.config_path, lambda f: f.write(text.encode()))

    def database_url(self, config: Config) -> str:
        return config.database_url or f"sqlite:///{self.root / 'stylesense.db'}"
