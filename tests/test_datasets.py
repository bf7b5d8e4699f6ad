"""Data set loaders: Fashion-MNIST decoding on a self-written idx fixture, real data where shared."""

import csv
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stylesense import datasets
from stylesense.datasets import (
    CatalogSource, demo_catalog, fashion_mnist, hm_articles, hm_transactions, kaggle_fashion,
    movielens_100k, read_atomic, shared_data_dir,
)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = (0x0800 | array.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture()
def idx_dir(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """5 train and 2 test random 28x28 images in the original file names."""
    rng = np.random.default_rng(0)
    source = tmp_path / "source"
    source.mkdir()
    data = {}
    for prefix, count in (("train", 5), ("t10k", 2)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = rng.permutation(10)[:count].astype(np.uint8)
        _write_idx(source / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(source / f"{prefix}-labels-idx1-ubyte.gz", labels)
        data[prefix] = (images, labels)
    return source, data


def _rows(source: CatalogSource) -> list[dict[str, str]]:
    with source.csv.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_fashion_mnist_decodes_every_image_with_its_class(idx_dir, tmp_path):
    source_dir, data = idx_dir
    source = fashion_mnist(tmp_path / "out", n=None, source_dir=source_dir)

    rows = _rows(source)
    assert list(rows[0]) == ["id", "articleType", "split"]
    assert [r["id"] for r in rows] == ["0", "1", "2", "3", "4", "60000", "60001"]
    assert [r["split"] for r in rows] == ["train"] * 5 + ["test"] * 2
    expected = [(img, lab) for prefix in ("train", "t10k") for img, lab in zip(*data[prefix])]
    for row, (pixels, label) in zip(rows, expected):
        assert row["articleType"] == datasets.FASHION_MNIST_CLASSES[label]
        with Image.open(source.image_path(row)) as image:
            assert image.mode == "L"
            np.testing.assert_array_equal(np.asarray(image), pixels)
    assert (source.id_column, source.label_columns, source.group_column) == ("id", ("articleType",), None)


def test_fashion_mnist_takes_first_n_in_split_ratio_and_reuses_files(idx_dir, tmp_path):
    source_dir, _ = idx_dir
    dest = tmp_path / "out"
    # n=7 -> round(7/7)=1 test image and 6 wanted from train, capped at the 5 there are.
    full = fashion_mnist(dest, n=7, source_dir=source_dir)
    assert [r["id"] for r in _rows(full)] == ["0", "1", "2", "3", "4", "60000"]

    png = dest / "images" / "0.png"
    png.write_bytes(b"sentinel")  # a reused file is not rewritten
    mtime = full.csv.stat().st_mtime_ns
    again = fashion_mnist(dest, n=7, source_dir=source_dir)
    assert again == full
    assert png.read_bytes() == b"sentinel"
    assert full.csv.stat().st_mtime_ns == mtime

    small = fashion_mnist(dest, n=3, source_dir=source_dir)
    assert [r["id"] for r in _rows(small)] == ["0", "1", "2"]


def test_fashion_mnist_missing_package_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist(tmp_path / "out", source_dir=tmp_path / "nowhere")


def test_fashion_mnist_rejects_non_idx_and_bad_n(idx_dir, tmp_path):
    source_dir, _ = idx_dir
    with gzip.open(source_dir / "train-images-idx3-ubyte.gz", "wb") as stream:
        stream.write(b"\x00\x00\x08\x01" + b"\x00" * 12)  # a label file's magic
    with pytest.raises(ValueError, match="idx file"):
        fashion_mnist(tmp_path / "out", source_dir=source_dir)
    with pytest.raises(ValueError, match="positive"):
        fashion_mnist(tmp_path / "out", n=0, source_dir=source_dir)


def test_image_template_formats_raw_strings(tmp_path):
    source = CatalogSource(csv=tmp_path / "a.csv", image_template="images/{article_id:.3}/{article_id}.jpg",
                           id_column="article_id", label_columns=())
    assert source.image_path({"article_id": "0111565001"}) == tmp_path / "images/011/0111565001.jpg"


def test_read_atomic_strips_types_and_keeps_quotes(tmp_path):
    path = tmp_path / "x.item"
    path.write_text('item_id:token\ttitle:token_seq\tscore:float\n007\t"Quoted" title\t2.5\n')
    frame = read_atomic(path)
    assert list(frame.columns) == ["item_id", "title", "score"]
    assert frame.loc[0, "item_id"] == "007"
    assert frame.loc[0, "title"] == '"Quoted" title'
    assert frame["score"].dtype == np.float64


def test_shared_data_dir_env_var_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLESENSE_SHARED_DATA", str(tmp_path))
    assert shared_data_dir(Path("/nonexistent")) == tmp_path.resolve()
    monkeypatch.setenv("STYLESENSE_SHARED_DATA", str(tmp_path / "missing"))
    assert shared_data_dir() is None


def test_demo_catalog_falls_back_to_fashion_mnist(idx_dir, tmp_path, monkeypatch):
    source_dir, _ = idx_dir
    real = datasets.fashion_mnist
    monkeypatch.setattr(datasets, "fashion_mnist", lambda dest: real(dest, source_dir=source_dir))
    source = demo_catalog(tmp_path / "work", shared=tmp_path / "empty-shared")
    assert source.csv == tmp_path / "work" / "fashion-mnist" / "items.csv"
    assert len(_rows(source)) == 7


def test_simulated_shoppers_write_into_a_new_folder(tmp_path):
    """The demo's event log, where the catalogue left no folder behind (the shared Kaggle set
    is read in place): every shopper favours one category, and views lead the funnel."""
    items = {f"i{k}": ("shirts" if k % 2 else "shoes") for k in range(40)}
    path = datasets.simulated_shoppers(items, tmp_path / "new" / "demo-data", n_users=20)
    frame = pd.read_csv(path, dtype=str)
    assert list(frame.columns) == ["user_id", "item_id", "type", "ts"]
    assert frame["user_id"].nunique() == 20 and set(frame["item_id"]) <= set(items)
    assert frame["type"].value_counts().idxmax() == "view"
    assert set(frame["type"]) <= {"view", "click", "cart", "purchase"}


def _first_rows_resolve(source: CatalogSource, count: int = 20) -> list[dict[str, str]]:
    rows = _rows(source)[:count]
    for row in rows:
        assert source.image_path(row).is_file(), source.image_path(row)
    return rows


@pytest.mark.shared
def test_kaggle_fashion_on_shared_data(shared_data):
    source = kaggle_fashion(shared_data / "fashion-product-images")
    rows = _first_rows_resolve(source)
    assert rows[0]["id"] == "10000"
    assert all(col in rows[0] for col in source.label_columns)
    assert demo_catalog(Path("unused"), shared=shared_data) == source


@pytest.mark.shared
def test_hm_articles_keep_leading_zeros(shared_data):
    source = hm_articles(shared_data / "hm")
    rows = _first_rows_resolve(source)
    assert all(len(r["article_id"]) == 10 and r["article_id"].startswith("0") for r in rows)
    assert all(r["article_id"].startswith(r["product_code"], 1) for r in rows)


@pytest.mark.shared
def test_hm_transactions_types(shared_data):
    frame = hm_transactions(shared_data / "hm")
    assert len(frame) == 30_451
    assert frame["price"].dtype == np.float64
    assert pd.api.types.is_datetime64_any_dtype(frame["t_dat"])
    assert frame["article_id"].str.len().eq(10).all()
    assert frame["article_id"].str.startswith("0").all()


@pytest.mark.shared
def test_movielens_100k(shared_data):
    frame = movielens_100k(shared_data / "movielens-100k")
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert frame.shape == (100_000, 4)
    assert (frame["user_id"].nunique(), frame["item_id"].nunique()) == (943, 1682)
    assert frame["rating"].between(1, 5).all()
