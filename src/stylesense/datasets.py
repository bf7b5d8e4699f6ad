"""Loaders for the public data sets stylesense is developed and demonstrated on.

Image catalogues are described, not loaded: a `CatalogSource` says which CSV, which column is
the id and how to find each row's photo, which is exactly what `stylesense catalog import`
needs, so the demo, the tests and the benchmarks import real data through the same path a
user's own catalogue takes. Behaviour data (H&M purchases, MovieLens ratings) is returned as
pandas DataFrames with the types the raw files lose (ids stay text, dates become datetimes).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from PIL import Image

from stylesense.catalog.presets import PRESETS
from stylesense.errors import InvalidInput

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# Test images get ids after the 60,000 training ones, so an image keeps its id whatever n is.
_FASHION_MNIST_SPLITS = (("train", "train", 0), ("test", "t10k", 60_000))
_FASHION_MNIST_TEST_SHARE = 10_000 / 70_000


@dataclass(frozen=True)
class CatalogSource:
    """Everything `stylesense catalog import` needs to read one catalogue CSV.

    `image_template` is a `str.format` template over the row's raw string values (so
    "{article_id:.3}" is the first three characters of a zero-padded id), relative to the
    CSV's folder. `group_column`, where set, holds ids shared by variants of one product
    (the ground truth for "same product" retrieval).
    """

    csv: Path
    image_template: str
    id_column: str
    label_columns: tuple[str, ...]
    group_column: str | None = None

    def image_path(self, row: Mapping[str, str]) -> Path:
        """The photo of one CSV row (raw string values, as `csv.DictReader` yields them)."""
        return self.csv.parent / self.image_template.format(**row)


def kaggle_fashion(root: Path) -> CatalogSource:
    """The Kaggle/Myntra "Fashion Product Images" folder (styles.csv + images/<id>.jpg)."""
    layout = PRESETS["kaggle"]
    return _existing(CatalogSource(
        csv=Path(root) / "styles.csv",
        image_template=layout.images,
        id_column=layout.id_column,
        label_columns=("articleType", "baseColour", "subCategory", "masterCategory", "gender"),
    ))


def hm_articles(root: Path) -> CatalogSource:
    """The H&M articles with photos, laid out as in the competition (images/<010>/<id>.jpg).

    article_id must stay text: it is 10 digits with a leading zero, which is also why the
    folder is taken from the first three characters of the raw string.
    """
    layout = PRESETS["hm"]
    return _existing(CatalogSource(
        csv=Path(root) / "articles.csv",
        image_template=layout.images,
        id_column=layout.id_column,
        label_columns=("product_type_name", "colour_group_name", "product_group_name",
                       "garment_group_name", "index_group_name"),
        group_column=layout.group_column,
    ))


def fashion_mnist(
    dest: Path,
    n: int | None = 2000,
    source_dir: Path = Path("/usr/share/datasets/fashion-mnist"),
) -> CatalogSource:
    """Decode Fashion-MNIST into PNG files plus items.csv, the fallback demo catalogue.

    It exists because the Debian package `dataset-fashion-mnist` can be installed on any
    machine, unlike the Kaggle photos. The first `n` images are taken (None: all 70,000),
    split between train and test in the original 6:1 ratio; both splits' first images are
    close to class-balanced. items.csv has columns id, articleType (the class name, named like
    the Kaggle column so the same commands work on both catalogues) and split. Re-running
    reuses PNGs already written, and files are written atomically so an interrupted run
    leaves no truncated image behind.
    """
    if n is not None and n <= 0:
        raise InvalidInput(f"n must be positive or None, got {n}")
    source_dir = Path(source_dir)
    dest = Path(dest)
    n_test = None if n is None else round(n * _FASHION_MNIST_TEST_SHARE)
    wanted = {"train": None if n is None else n - n_test, "test": n_test}

    rows: list[tuple[str, str, str]] = []
    (dest / "images").mkdir(parents=True, exist_ok=True)
    for split, prefix, first_id in _FASHION_MNIST_SPLITS:
        images, labels = _read_idx_pair(source_dir, prefix, wanted[split])
        for offset, (pixels, label) in enumerate(zip(images, labels)):
            item_id = str(first_id + offset)
            png = dest / "images" / f"{item_id}.png"
            if not png.exists():
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="PNG")
                _write_atomic(png, buffer.getvalue())
            rows.append((item_id, FASHION_MNIST_CLASSES[label], split))

    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("id", "articleType", "split"))
    writer.writerows(rows)
    items = dest / "items.csv"
    content = text.getvalue().encode()
    if not items.exists() or items.read_bytes() != content:
        _write_atomic(items, content)
    return CatalogSource(csv=items, image_template="images/{id}.png", id_column="id",
                         label_columns=("articleType",))


def simulated_shoppers(
    items: Mapping[str, str], dest: Path, n_users: int = 400, per_user: int = 15,
    per_category: int = 25, seed: int = 0,
) -> Path:
    """A SIMULATED event log for the demo catalogue (which has no real behaviour data), as a CSV
    with columns user_id, item_id, type, ts.

    ``items`` maps item id -> category; the shoppers use the first ``per_category`` items of
    each category (a dense log, so that collaborative models have co-occurrences to learn).
    Each shopper favours one category (80% of their events) and browses at random otherwise; every event is a view, and some views lead on to a click,
    a cart and a purchase, as in a shop's funnel. Real evaluation uses the shared H&M and
    MovieLens logs; this only shows the commands working end to end on any machine.
    """
    rng = np.random.default_rng(seed)
    by_category: dict[str, list[str]] = {}
    for item, category in items.items():
        shelf = by_category.setdefault(category, [])
        if len(shelf) < per_category:
            shelf.append(item)
    categories = sorted(by_category)
    all_items = [item for shelf in by_category.values() for item in shelf]
    start = pd.Timestamp("2024-01-01", tz="UTC")
    rows = []
    for u in range(n_users):
        favourite = by_category[categories[u % len(categories)]]
        t = start + pd.Timedelta(minutes=int(rng.integers(0, 30 * 24 * 60)))
        for _ in range(per_user):
            pool = favourite if rng.random() < 0.8 else all_items
            item = pool[int(rng.integers(len(pool)))]
            for step in ("view", "click", "cart", "purchase"):
                rows.append((f"shopper{u}", item, step, t.isoformat()))
                t += pd.Timedelta(minutes=int(rng.integers(1, 30)))
                if rng.random() > 0.35:
                    break
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"])
    path = Path(dest) / "events.csv"
    path.parent.mkdir(parents=True, exist_ok=True)  # the demo catalogue may live elsewhere
    _write_atomic(path, frame.to_csv(index=False).encode())
    return path


def shared_data_dir(base: Path | None = None) -> Path | None:
    """The shared development data folder, or None where this machine has none.

    STYLESENSE_SHARED_DATA wins when set; otherwise `<base>/../shared/data`, base being the
    project root (default: the current directory, where the CLI is normally run from).
    """
    env = os.environ.get("STYLESENSE_SHARED_DATA")
    candidate = Path(env) if env else (Path.cwd() if base is None else Path(base)) / ".." / "shared" / "data"
    return candidate.resolve() if candidate.is_dir() else None


def demo_catalog(workdir: Path, shared: Path | None = None) -> CatalogSource:
    """The best demo catalogue this machine has: Kaggle photos if shared, else Fashion-MNIST.

    Fashion-MNIST is decoded under workdir/fashion-mnist; `shared` defaults to
    `shared_data_dir()`.
    """
    shared = shared_data_dir() if shared is None else Path(shared)
    if shared is not None and (shared / "fashion-product-images" / "styles.csv").is_file():
        return kaggle_fashion(shared / "fashion-product-images")
    return fashion_mnist(Path(workdir) / "fashion-mnist")


def hm_transactions(root: Path) -> pd.DataFrame:
    """H&M purchases: t_dat datetime, customer_id and article_id text, price float.

    One row per item bought, so identical rows are real repeat purchases (quantity), not
    duplicates to drop.
    """
    path = Path(root) / "transactions.csv"
    _require(path)
    return pd.read_csv(
        path,
        dtype={"customer_id": str, "article_id": str, "price": float, "sales_channel_id": int},
        parse_dates=["t_dat"],
    )


def movielens_100k(root: Path) -> pd.DataFrame:
    """MovieLens 100K ratings (user_id, item_id text; rating, timestamp float)."""
    return read_atomic(Path(root) / "ml-100k.inter")


def read_atomic(path: Path) -> pd.DataFrame:
    """Read a RecBole atomic file: tab-separated, header names typed as `name:type`.

    The type suffix is stripped from the column names and applied: `float` columns become
    numbers; everything else (token, token_seq) stays text, since ids are tokens and a
    token_seq is a space-separated list whose splitting is the consumer's choice. Quoting is off because movie
    titles contain quote characters that are data.
    """
    path = Path(path)
    _require(path)
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    names, kinds = zip(*(column.rsplit(":", 1) for column in frame.columns))
    frame.columns = list(names)
    for name, kind in zip(names, kinds):
        if kind == "float":
            frame[name] = pd.to_numeric(frame[name]).astype(float)
    return frame


def _read_idx_pair(source_dir: Path, prefix: str, count: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` (None: all) images and labels of one Fashion-MNIST split."""
    images_path = source_dir / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = source_dir / f"{prefix}-labels-idx1-ubyte.gz"
    for path in (images_path, labels_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"Fashion-MNIST file {path} not found; install the Debian package with "
                "`apt-get install dataset-fashion-mnist`")
    images = _read_idx(images_path, 3, count)
    labels = _read_idx(labels_path, 1, count)
    if len(images) != len(labels):
        raise InvalidInput(f"{images_path} has {len(images)} images but {labels_path} {len(labels)} labels")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise InvalidInput(f"{labels_path} holds label {labels.max()}, Fashion-MNIST has 10 classes")
    return images, labels


def _read_idx(path: Path, ndim: int, count: int | None) -> np.ndarray:
    """Read the first `count` records of a gzipped unsigned-byte idx file.

    Only the needed bytes are decompressed: the default 2,000 images need 1.5 MB of the
    47 MB training file.
    """
    with gzip.open(path, "rb") as stream:
        header = stream.read(4 + 4 * ndim)
        if len(header) != 4 + 4 * ndim or int.from_bytes(header[:4], "big") != 0x0800 | ndim:
            raise InvalidInput(f"{path} is not an unsigned-byte idx file with {ndim} dimension(s)")
        shape = [int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        if count is not None:
            shape[0] = min(shape[0], count)
        size = int(np.prod(shape))
        data = stream.read(size)
    if len(data) != size:
        raise InvalidInput(f"{path} is truncated: expected {size} bytes of data, got {len(data)}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _write_atomic(path: Path, content: bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def _require(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")


def _existing(source: CatalogSource) -> CatalogSource:
    """Fail at load time, naming the file, rather than deep inside an import."""
    _require(source.csv)
    return source
