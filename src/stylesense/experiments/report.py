"""An experiment's per-arm numbers with their uncertainty, and the online feedback rate.

Per arm (first arm = control, every other arm is compared with it):

* **shoppers**: those the experiment served (recorded assignments); **impressions**: answers served.
* **rates per impression**, each a proportion with a Wilson 95 % interval and a two-proportion
  z-test (pooled) against the control: click-through (an impression with a credited view, click,
  like, cart or purchase), add-to-cart (a credited cart or purchase: the funnel's later stages
  imply the earlier), conversion (a credited purchase), and negative feedback (a credited
  ``dislike`` / ``not_interested``; ``negative_events`` counts those events).
* **revenue** per shopper (every served shopper, zeros included) and per impression: the prices
  of credited purchases, with a t interval and Welch's t-test against the control (revenue is
  skewed; with the hundreds of shoppers an experiment has, the mean's sampling distribution is
  close enough to normal, and Welch does not assume equal variances).
* **return rate**: the share of shoppers with another visit (an impression or an event) at
  least ``RETURN_GAP`` (a session's gap) and at most ``RETURN_DAYS`` after their first
  impression; for shoppers first served less than a week ago it is a lower bound.
* **sample-ratio mismatch**: a chi-square goodness-of-fit test of the shoppers per arm against
  the configured split. A p-value under ``SRM_ALPHA`` means the assignment or the logging is
  broken (a bot, an arm that errors and serves nothing), and no other number here can be trusted.

Which events are credited to which impression is :mod:`stylesense.experiments.attribution`'s
rule. The z-test treats impressions as independent, as A/B tools do; a shopper's impressions are
correlated, so per-shopper revenue is the sturdier measure when shoppers return often.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from stylesense.atomic import atomic_write
from stylesense.experiments.attribution import attribute
from stylesense.experiments.store import Experiment, Impression
from stylesense.weights import NEGATIVE_TYPES

CLICK_TYPES = frozenset({"view", "click", "like", "cart", "purchase"})
CART_TYPES = frozenset({"cart", "purchase"})
PURCHASE_TYPES = frozenset({"purchase"})
POSITIVE_TYPES = CLICK_TYPES
"""What Gorse-style online evaluation counts as positive feedback on a served recommendation."""
CONFIDENCE = 0.95
ALPHA = 0.05
SRM_ALPHA = 0.001  # the usual threshold: an SRM alarm must be rare when nothing is wrong
RETURN_GAP = timedelta(minutes=30)
RETURN_DAYS = 7
PRIMARY = {"click": "ctr", "cart": "cart_rate", "purchase": "conversion_rate", "revenue": "revenue_per_shopper"}
RATES = ("ctr", "cart_rate", "conversion_rate", "negative_rate", "return_rate")
MEANS = ("revenue_per_shopper", "revenue_per_impression")
LABELS = {"ctr": "click-through rate", "cart_rate": "add-to-cart rate", "conversion_rate": "conversion rate",
          "negative_rate": "negative-feedback rate", "return_rate": "returned within 7 days",
          "revenue_per_shopper": "revenue per shopper", "revenue_per_impression": "revenue per impression"}


# -- statistics ---------------------------------------------------------------------------------
def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (sound near 0 and 1, where the normal one is not);
    None for n = 0."""
    if n == 0:
        return None
    z, p = _z(confidence), successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (0.0 if successes == 0 else max(0.0, centre - half)), (1.0 if successes == n else min(1.0, centre + half))


def two_proportion_ztest(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float] | None:
    """(z, two-sided p) of H0: p1 == p2, with the pooled standard error; None when either group
    is empty. When no (or every) impression succeeded in both, nothing differs: z 0, p 1."""
    if n1 == 0 or n2 == 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def welch_ttest(a: Sequence[float], b: Sequence[float]) -> tuple[float, float] | None:
    """(t, two-sided p) of Welch's t-test of H0: mean(a) == mean(b) (t > 0: b larger), with
    the Welch-Satterthwaite degrees of freedom; None with fewer than two values in either.
    Two constant samples: p 1 when equal, else 0. Written out rather than scipy's
    ``ttest_ind``, which warns (process-wide state) whenever one arm's revenue is constant."""
    from scipy.stats import t as student

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) < 2 or len(y) < 2:
        return None
    vx, vy = float(x.var(ddof=1)) / len(x), float(y.var(ddof=1)) / len(y)
    diff = float(y.mean() - x.mean())
    if vx + vy == 0:
        return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    t = diff / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    return t, float(2 * student.sf(abs(t), df))


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """t interval of a mean; None with fewer than two values."""
    from scipy.stats import t

    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return None
    half = float(t.ppf(0.5 + confidence / 2, len(x) - 1)) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return float(x.mean()) - half, float(x.mean()) + half


def sample_ratio_mismatch(observed: Sequence[int], split: Sequence[float]) -> tuple[float, float]:
    """(chi-square, p) of the observed counts per arm against the expected shares; (0, 1) with
    nobody observed yet."""
    from scipy.stats import chisquare

    total = sum(observed)
    if total == 0:
        return 0.0, 1.0
    expected = np.asarray(split, dtype=np.float64) * total
    result = chisquare(np.asarray(observed, dtype=np.float64), f_exp=expected)
    return float(result.statistic), float(result.pvalue)


# -- the report ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """A measured value with its 95 % interval, and its difference from the control's with that
    test's p-value (None for the control, or where not computable)."""

    value: float | None
    low: float | None = None
    high: float | None = None
    diff: float | None = None
    p_value: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"value": _round(self.value), "low": _round(self.low), "high": _round(self.high),
                "diff": _round(self.diff), "p_value": _round(self.p_value, 8)}

    def cell(self, control: bool) -> str:
        if self.value is None:
            return "-"
        text = f"{self.value:.4g}"
        if self.low is not None and self.high is not None:
            text += f" [{self.low:.3g}, {self.high:.3g}]"
        if not control and self.p_value is not None:
            text += f" p={self.p_value:.3g}"
        return text


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


@dataclass(frozen=True)
class ArmReport:
    """One arm's counts and estimates (see the module's definitions)."""

    arm: str
    share: float  # configured share of traffic
    shoppers: int
    impressions: int
    clicks: int  # impressions with a credited click (any engagement)
    carts: int
    purchases: int  # impressions with a credited purchase
    revenue: float
    negative_events: int
    returning: int
    estimates: dict[str, Estimate]

    def to_dict(self) -> dict[str, Any]:
        return {"arm": self.arm, "share": round(self.share, 6), "shoppers": self.shoppers,
                "impressions": self.impressions, "clicks": self.clicks, "carts": self.carts,
                "purchases": self.purchases, "revenue": round(self.revenue, 6),
                "negative_events": self.negative_events, "returning": self.returning,
                **{key: e.to_dict() for key, e in self.estimates.items()}}


@dataclass(frozen=True)
class ExperimentReport:
    """Every arm's report, the sample-ratio check and the verdict on the primary metric:
    ``winner`` is the arm best on it when that is significant at ``alpha`` against every
    other arm it was compared with (each treatment against the control), else None."""

    experiment: Experiment
    as_of: datetime
    arms: list[ArmReport]
    srm_chi2: float
    srm_p: float
    winner: str | None
    alpha: float = ALPHA

    @property
    def primary(self) -> str:
        return PRIMARY[self.experiment.metric]

    @property
    def srm(self) -> bool:
        """True when the shoppers per arm do not match the split (see the module)."""
        return self.srm_p < SRM_ALPHA

    def arm(self, name: str) -> ArmReport:
        return next(a for a in self.arms if a.arm == name)

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment.to_dict(), "as_of": self.as_of.isoformat(),
                "control": self.arms[0].arm if self.arms else None, "primary": self.primary,
                "alpha": self.alpha, "winner": self.winner,
                "srm": {"chi2": _round(self.srm_chi2), "p_value": _round(self.srm_p, 8), "mismatch": self.srm,
                        "threshold": SRM_ALPHA},
                "arms": [a.to_dict() for a in self.arms]}

    def to_json(self, path: str | Path) -> None:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        atomic_write(path, lambda f: f.write(text.encode()))

    def table(self) -> Table:
        """Metrics as rows, one column per arm: value [95 % CI] and, for treatments, p against the control."""
        e = self.experiment
        table = Table(title=f"experiment {e.name} ({e.status}), primary {LABELS[self.primary]}, "
                            f"window {e.window_hours:g} h; control {self.arms[0].arm}")
        table.add_column("")
        for a in self.arms:
            table.add_column(a.arm, justify="right")
        for label, cells in self.rows():
            table.add_row(label, *cells)
        return table

    def rows(self) -> list[tuple[str, list[str]]]:
        """(measure, one cell per arm) of :meth:`table`, for every surface that shows it as text;
        the primary metric is starred."""
        counts = [(label, [f"{getattr(a, key):,.6g}" for a in self.arms])
                  for label, key in (("shoppers", "shoppers"), ("impressions", "impressions"),
                                     ("purchases", "purchases"), ("revenue", "revenue"),
                                     ("negative events", "negative_events"))]
        return counts + [(LABELS[key] + (" *" if key == self.primary else ""),
                          [a.estimates[key].cell(i == 0) for i, a in enumerate(self.arms)]) for key in (*RATES, *MEANS)]

    def verdict(self) -> str:
        """One line: the winner (or none yet) and the sample-ratio check."""
        srm = (f"SAMPLE-RATIO MISMATCH (p={self.srm_p:.2g} < {SRM_ALPHA}): the numbers cannot be trusted"
               if self.srm else f"shoppers per arm match the split (SRM p={self.srm_p:.3g})")
        if self.winner is None:
            return f"no significant winner on {LABELS[self.primary]} at alpha {self.alpha}; {srm}"
        return f"winner on {LABELS[self.primary]}: {self.winner} (alpha {self.alpha}); {srm}"

    def figure(self):
        """Bars per arm with their 95 % intervals, one panel per rate and per revenue measure
        (a bare matplotlib Figure: no pyplot state)."""
        from matplotlib.figure import Figure

        keys = (*RATES, *MEANS)
        fig = Figure(figsize=(3.0 * 4, 3.0 * 2))
        axes = fig.subplots(2, 4).ravel()
        names = [a.arm for a in self.arms]
        for ax, key in zip(axes, keys):
            shown = [a.estimates[key] for a in self.arms]
            values = [e.value or 0.0 for e in shown]
            lows = [max(0.0, v - e.low) if e.low is not None else 0.0 for v, e in zip(values, shown)]
            highs = [max(0.0, e.high - v) if e.high is not None else 0.0 for v, e in zip(values, shown)]
            ax.bar(names, values, yerr=[lows, highs], capsize=4, color=[f"C{i}" for i in range(len(names))])
            p = [a.estimates[key].p_value for a in self.arms[1:]]
            note = ", ".join(f"p={x:.2g}" for x in p if x is not None)
            ax.set_title(LABELS[key] + (" *" if key == self.primary else ""), fontsize=9)
            if note:
                ax.set_xlabel(note, fontsize=8)
        axes[-1].axis("off")
        axes[-1].text(0, 0.5, "\n".join([f"experiment {self.experiment.name}",
                                         *(f"{a.arm}: {a.shoppers} shoppers, {a.impressions} impressions"
                                           for a in self.arms),
                                         f"SRM p={self.srm_p:.3g}", f"winner: {self.winner or 'none'}"]),
                      fontsize=8, va="center")
        fig.tight_layout()
        return fig

    def plot(self, path: str | Path) -> Path:
        """:meth:`figure` written as PNG (atomically)."""
        fig = self.figure()
        path = Path(path)
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
        return path


@dataclass
class _Tally:
    """What the report counts for one impression."""

    click: bool = False
    cart: bool = False
    purchase: bool = False
    negative: int = 0
    revenue: float = 0.0


def _tallies(impressions: Sequence[Impression], events: Sequence[Mapping[str, Any]],
             window_us: int) -> dict[str, _Tally]:
    credited = attribute(impressions, events, window_us)
    tallies = {i.impression_id: _Tally() for i in impressions}
    for event in events:
        impression = credited.get(event["pk"])
        if impression is None:
            continue
        tally, kind = tallies[impression], event["type"]
        tally.click |= kind in CLICK_TYPES
        tally.cart |= kind in CART_TYPES
        if kind in PURCHASE_TYPES:
            tally.purchase = True
            price = event.get("price")
            tally.revenue += float(price) if price is not None and math.isfinite(price) else 0.0
        tally.negative += kind in NEGATIVE_TYPES
    return tallies


@dataclass(frozen=True)
class _Arm:
    """One arm's raw material: its impressions' tallies, its shoppers' revenues, who returned."""

    name: str
    share: float
    shown: list[_Tally]
    revenues: list[float]  # per shopper served, zeros included
    returning: int

    def proportions(self) -> dict[str, tuple[int, int]]:
        """(successes, trials) of each rate: per impression, and per shopper for returns."""
        n = len(self.shown)
        return {"ctr": (sum(t.click for t in self.shown), n), "cart_rate": (sum(t.cart for t in self.shown), n),
                "conversion_rate": (sum(t.purchase for t in self.shown), n),
                "negative_rate": (sum(t.negative > 0 for t in self.shown), n),
                "return_rate": (self.returning, len(self.revenues))}

    def samples(self) -> dict[str, list[float]]:
        return {"revenue_per_shopper": self.revenues, "revenue_per_impression": [t.revenue for t in self.shown]}


def build_report(experiment: Experiment, assignments: Mapping[str, str], impressions: Sequence[Impression],
                 events: Sequence[Mapping[str, Any]], now: datetime, *, alpha: float = ALPHA) -> ExperimentReport:
    """The report from the experiment's records: ``assignments`` user -> arm, its impressions,
    and the events of its shoppers from its start on (pk, user_id, item_id, type, ts_us,
    price, impression_id), oldest first."""
    us = timedelta(microseconds=1)
    tallies = _tallies(impressions, events, experiment.window // us)
    first: dict[str, int] = {}
    for i in impressions:
        first[i.user_id] = min(first.get(i.user_id, i.ts_us), i.ts_us)
    gap, week = RETURN_GAP // us, timedelta(days=RETURN_DAYS) // us
    returned = {u for u, ts in _activity(impressions, events) if u in first and first[u] + gap <= ts <= first[u] + week}

    arms = []
    for name, share in zip(experiment.arms, experiment.split):
        revenue = {u: 0.0 for u, a in assignments.items() if a == name}
        shown = []
        for i in impressions:
            if i.arm == name:
                shown.append(tallies[i.impression_id])
                if i.user_id in revenue:
                    revenue[i.user_id] += tallies[i.impression_id].revenue
        arms.append(_Arm(name, share, shown, list(revenue.values()), sum(u in returned for u in revenue)))

    control = arms[0]
    base_rates, base_samples = control.proportions(), control.samples()
    reports = []
    for arm in arms:
        treated = arm is not control
        estimates: dict[str, Estimate] = {}
        rates = arm.proportions()
        for key, (x, n) in rates.items():
            x0, n0 = base_rates[key]
            test = two_proportion_ztest(x0, n0, x, n) if treated else None
            estimates[key] = Estimate(x / n if n else None, *(wilson(x, n) or (None, None)),
                                      x / n - x0 / n0 if treated and n and n0 else None,
                                      None if test is None else test[1])
        for key, values in arm.samples().items():
            baseline = base_samples[key]
            test = welch_ttest(baseline, values) if treated else None
            estimates[key] = Estimate(float(np.mean(values)) if values else None, *(mean_ci(values) or (None, None)),
                                      float(np.mean(values) - np.mean(baseline)) if treated and values and baseline else None,
                                      None if test is None else test[1])
        reports.append(ArmReport(arm.name, arm.share, len(arm.revenues), len(arm.shown), rates["ctr"][0],
                                 rates["cart_rate"][0], rates["conversion_rate"][0],
                                 float(sum(t.revenue for t in arm.shown)), sum(t.negative for t in arm.shown),
                                 arm.returning, estimates))

    chi2, srm_p = sample_ratio_mismatch([a.shoppers for a in reports], experiment.split)
    return ExperimentReport(experiment, now, reports, chi2, srm_p, _winner(reports, PRIMARY[experiment.metric], alpha),
                            alpha)


def _activity(impressions: Iterable[Impression], events: Iterable[Mapping[str, Any]]) -> Iterable[tuple[str, int]]:
    """(user, time) of every visit sign: an impression served or an event recorded."""
    yield from ((i.user_id, i.ts_us) for i in impressions)
    yield from ((e["user_id"], e["ts_us"]) for e in events)


def _winner(arms: Sequence[ArmReport], key: str, alpha: float) -> str | None:
    """The arm best on ``key`` when significantly so: a treatment beating the control at
    ``alpha``, or the control when every treatment is significantly worse."""
    scored = [a for a in arms if a.estimates[key].value is not None]
    if len(scored) < 2 or len(scored) < len(arms):
        return None
    best = max(arms, key=lambda a: a.estimates[key].value)  # type: ignore[arg-type,return-value]
    if best is arms[0]:
        treatments = [a.estimates[key] for a in arms[1:]]
        wins = all(e.p_value is not None and e.p_value < alpha and (e.diff or 0) < 0 for e in treatments)
    else:
        e = best.estimates[key]
        wins = e.p_value is not None and e.p_value < alpha and (e.diff or 0) > 0
    return best.arm if wins else None


# -- online evaluation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class OnlineRate:
    """Gorse-style online evaluation of one model: of the recommendations it served in the
    rolling window, the share that got positive feedback (a credited view, click, like, cart or
    purchase) by now."""

    model: str
    impressions: int
    positive: int

    @property
    def rate(self) -> float | None:
        return self.positive / self.impressions if self.impressions else None

    def to_dict(self) -> dict[str, Any]:
        ci = wilson(self.positive, self.impressions)
        return {"model": self.model, "impressions": self.impressions, "positive": self.positive,
                "rate": _round(self.rate), "low": _round(ci[0]) if ci else None, "high": _round(ci[1]) if ci else None}


def online_rates(impressions: Sequence[Impression], events: Sequence[Mapping[str, Any]],
                 window_us: int) -> list[OnlineRate]:
    """Per model (sorted by name), impressions and those with positive feedback credited
    within ``window_us`` after them."""
    tallies = _tallies(impressions, events, window_us)
    counts: dict[str, list[int]] = {}
    for i in impressions:
        entry = counts.setdefault(i.model, [0, 0])
        entry[0] += 1
        entry[1] += tallies[i.impression_id].click
    return [OnlineRate(m, n, p) for m, (n, p) in sorted(counts.items())]
