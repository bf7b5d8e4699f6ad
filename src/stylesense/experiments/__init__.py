"""A/B experiments measured on engagement, satisfaction and revenue.

:mod:`.store` keeps experiments, assignments and impressions in the home's database;
:mod:`.assign` puts a shopper in an arm (a stable hash); :mod:`.attribution` credits events to
the recommendations they answer; :mod:`.report` turns both into per-arm rates, revenue, 95 %
intervals, significance tests and a sample-ratio check, and the online feedback rate;
:mod:`.service` is what the surfaces call (``StyleSense.experiments``); :mod:`.simulate`
replays held-out behaviour through a real API to exercise it all end to end.
"""

from __future__ import annotations

from stylesense.experiments.service import Experiments, Served
from stylesense.experiments.store import METRICS, Experiment, Impression

__all__ = ["METRICS", "Experiment", "Experiments", "Impression", "Served"]
