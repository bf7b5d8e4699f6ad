"""ALS fitted by Spark (``pyspark.ml.recommendation.ALS``, implicit preferences), saved and
served as the ordinary ``als`` model.

The fit hands Spark exactly the matrix the local ALS factorises: the interactions' (user,
item, weight) cells, written by us as a Parquet file, which Spark reads; Spark's confidence is
``1 + alpha * weight``, the local model's too. Spark writes the user and item factors back as
Parquet, which become the model's factor matrices; the local solver is set up around the item
factors, so fold-in of live events (``recalculate_user``) works as after a local fit.

Spark's regularisation differs from implicit's: it scales ``regParam`` by each user's (item's)
number of rated cells ("ALS-WR"), where implicit adds ``regularization`` once. To fit the same
objective, ``regParam`` is ``regularization`` divided by the mean number of cells per user.

The Parquet files live in ``workdir`` (default: a temporary folder); with a cluster of several
machines it must be a folder every Spark worker reads and writes at the same path (NFS, or a
URI Spark knows, e.g. ``hdfs://`` / ``s3a://`` with the matching Hadoop connector).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from stylesense.errors import NotReady
from stylesense.recommenders.als import ALS
from stylesense.recommenders.data import Interactions


class SparkALS(ALS):
    """:class:`~stylesense.recommenders.als.ALS` whose fit runs on the Spark master ``master``
    (``local[N]``, ``spark://host:7077``). Same parameters; ``threads`` does not apply (Spark's
    executors decide); ``seed`` seeds Spark's initial factors."""

    def __init__(self, master: str, workdir: str | os.PathLike[str] | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.master = master
        self.workdir = workdir
        self.fit_details: dict[str, Any] = {}

    def _fit(self, data: Interactions) -> None:
        cells = data.matrix.tocoo()
        if not cells.nnz:
            raise NotReady("no interactions to fit")
        own = self.workdir is None
        folder = Path(tempfile.mkdtemp(prefix="stylesense-spark-")) if own else Path(self.workdir)  # type: ignore[arg-type]
        folder.mkdir(parents=True, exist_ok=True)
        try:
            users, items = self._spark_fit(cells, folder, data.n_users)
        finally:
            if own:
                shutil.rmtree(folder, ignore_errors=True)
        self.user_factors = _dense(users, data.n_users, self.params["factors"])
        self.item_factors = _dense(items, data.n_items, self.params["factors"])
        self._item_norms = None
        self._als = self._solver()  # fold-in of live events against Spark's item factors
        self._als.item_factors = self.item_factors
        self._als.user_factors = self.user_factors

    def _spark_fit(self, cells: Any, folder: Path, n_users: int) -> tuple[Any, Any]:
        import pandas as pd

        interactions = folder / "interactions.parquet"
        pd.DataFrame({"user": cells.row.astype(np.int32), "item": cells.col.astype(np.int32),
                      "weight": cells.data.astype(np.float32)}).to_parquet(interactions, index=False)
        with warnings.catch_warnings():  # pyspark warns of pandas 3 on import; no pandas API of it runs here
            warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
            spark = session(self.master)
            try:
                from pyspark.ml.recommendation import ALS as Spark

                p = self.params
                blocks = max(1, spark.sparkContext.defaultParallelism)  # one block per core: fewer, larger tasks
                estimator = Spark(rank=p["factors"], maxIter=p["iterations"],
                                  regParam=p["regularization"] * n_users / cells.nnz, implicitPrefs=True,
                                  alpha=p["alpha"], seed=p["seed"], userCol="user", itemCol="item",
                                  ratingCol="weight", nonnegative=False, coldStartStrategy="drop",
                                  numUserBlocks=blocks, numItemBlocks=blocks)
                fitted = estimator.fit(spark.read.parquet(str(interactions)))
                fitted.userFactors.write.mode("overwrite").parquet(str(folder / "user_factors"))
                fitted.itemFactors.write.mode("overwrite").parquet(str(folder / "item_factors"))
                self.fit_details = {"master": self.master, "default_parallelism": spark.sparkContext.defaultParallelism}
            finally:
                spark.stop()
        return pd.read_parquet(folder / "user_factors"), pd.read_parquet(folder / "item_factors")


def session(master: str) -> Any:
    """A Spark session on ``master`` for one fit (stopped by the caller); NotReady naming what
    is missing where pyspark or Java is not installed."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise NotReady("the spark engine needs pyspark: pip install 'stylesense[spark]'") from None
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise NotReady("the spark engine needs Java 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    # the executors' Python is this one (a cluster's workers need the same installation)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master(master).appName("stylesense-als")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "8")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")  # Spark's warnings (no native BLAS, no Hadoop) are not the user's
    return spark


def _dense(factors: Any, n: int, rank: int) -> np.ndarray:
    """Spark's (id, features) rows as an (n, rank) matrix; rows Spark has none for (items
    without a cell: catalogue products nobody touched yet) stay zero, as no evidence."""
    out = np.zeros((n, rank), np.float32)
    if len(factors):
        out[factors["id"].to_numpy(np.int64)] = np.stack(factors["features"].to_numpy()).astype(np.float32)
    return out
