"""Where a model is fitted: ``local`` (in this process, the default) or ``spark`` (pyspark's
ALS on a Spark cluster, :mod:`.spark_als`). The engine changes only the fit: the model saved
is the same kind, served and caught up with live events as any other."""

from __future__ import annotations

from stylesense.errors import InvalidInput
from stylesense.recommenders.base import Recommender

ENGINES = ("local", "spark")
DEFAULT_SPARK_MASTER = "local[2]"


def on_engine(model: Recommender, engine: str, spark_master: str | None = None, workdir: str | None = None) -> Recommender:
    """``model`` (unfitted) made to fit on ``engine``; InvalidInput for an unknown engine, a
    model the engine cannot fit, or a Spark master given for the local engine."""
    if engine not in ENGINES:
        raise InvalidInput(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    if engine == "local":
        if spark_master is not None:
            raise InvalidInput("--spark-master needs --engine spark")
        return model
    if model.name != "als":
        raise InvalidInput(f"the spark engine fits als only, not {model.name}")
    from stylesense.recommenders.engines.spark_als import SparkALS

    return SparkALS(spark_master or DEFAULT_SPARK_MASTER, workdir, **model.params)
