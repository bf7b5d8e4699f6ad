"""The experiment report's statistics against hand-computed cases (Wilson interval, pooled
two-proportion z-test, Welch's t-test, t interval, chi-square sample-ratio check), and a
report over hand-made records whose every number is counted by hand: rates, revenue per
shopper with its zeros, negative feedback, returns within 7 days, the winner; its JSON, table
and chart."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console

from stylesense.experiments.report import (build_report, mean_ci, sample_ratio_mismatch, two_proportion_ztest,
                                           welch_ttest, wilson)
from stylesense.experiments.store import Experiment, Impression, micros

Z = 1.959963984540054  # the normal distribution's 97.5th percentile


def test_wilson_interval():
    low, high = wilson(5, 10)
    centre = (0.5 + Z * Z / 20) / (1 + Z * Z / 10)
    half = Z * math.sqrt(0.25 / 10 + Z * Z / 400) / (1 + Z * Z / 10)
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)  # the textbook value for 5 of 10
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(0, 0) is None


def test_two_proportion_z_test():
    z, p = two_proportion_ztest(200, 1000, 250, 1000)
    pooled = 450 / 2000
    assert z == pytest.approx(0.05 / math.sqrt(pooled * (1 - pooled) * (2 / 1000)))
    assert (z, p) == pytest.approx((2.6774, 0.00742), abs=1e-4)
    z, p = two_proportion_ztest(250, 1000, 200, 1000)
    assert (z, p) == pytest.approx((-2.6774, 0.00742), abs=1e-4)  # the sign says which is larger
    assert two_proportion_ztest(0, 50, 0, 70) == (0.0, 1.0)  # nothing happened in either: no difference
    assert two_proportion_ztest(1, 0, 1, 10) is None


def test_welch_t_test():
    a, b = [1, 2, 3, 4], [2, 4, 6, 8, 10]
    va, vb = 5 / 3, 10.0  # sample variances
    t_by_hand = (6 - 2.5) / math.sqrt(va / 4 + vb / 5)
    t, p = welch_ttest(a, b)
    df_by_hand = (va / 4 + vb / 5) ** 2 / ((va / 4) ** 2 / 3 + (vb / 5) ** 2 / 4)
    assert t == pytest.approx(t_by_hand) and t == pytest.approx(2.2514, abs=1e-4)
    assert df_by_hand == pytest.approx(5.5208, abs=1e-4)
    assert p == pytest.approx(0.06913, abs=1e-5)  # R: t.test(c(2,4,6,8,10), c(1,2,3,4)): df 5.52, p 0.06913
    assert welch_ttest([3, 3], [3, 3, 3]) == (0.0, 1.0)
    assert welch_ttest([0, 0], [1, 1])[1] == 0.0
    assert welch_ttest([1], [1, 2]) is None


def test_t_interval_of_a_mean():
    low, high = mean_ci([1, 2, 3, 4])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t(0.975, 3 df) * s / sqrt(n)
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))
    assert mean_ci([7]) is None


def test_sample_ratio_mismatch():
    chi2, p = sample_ratio_mismatch([520, 480], [0.5, 0.5])
    assert chi2 == pytest.approx(2 * 20**2 / 500)
    assert p == pytest.approx(math.erfc(math.sqrt(chi2 / 2)))  # chi-square with 1 df
    assert p == pytest.approx(0.2059, abs=1e-4)
    assert sample_ratio_mismatch([600, 400], [0.5, 0.5])[1] == pytest.approx(2.54e-10, rel=1e-2)
    assert sample_ratio_mismatch([100, 100, 200], [0.25, 0.25, 0.5]) == pytest.approx((0.0, 1.0))
    assert sample_ratio_mismatch([0, 0], [0.5, 0.5]) == (0.0, 1.0)


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
EXPERIMENT = Experiment("hand", ("a", "b"), (0.5, 0.5), "purchase", 24.0, "running", T0)


def at(**delta) -> int:
    return micros(T0 + timedelta(hours=1) + timedelta(**delta))


def records():
    """20 shoppers, 10 per arm, each shown (x, y) once an hour after the start. Arm a: 2 buy x
    at 10, one views y, one dislikes y and is not interested in x; a0 comes back after 2 days,
    a1 within 10 minutes (the same visit), a4 after 8 days (too late). Arm b: 8 buy x at 20,
    one puts y in the cart; b0 comes back after 3 days."""
    users = [f"a{n}" for n in range(10)] + [f"b{n}" for n in range(10)]
    assignments = {u: u[0] for u in users}
    impressions = [Impression(f"imp-{u}", "hand", u[0], u[0], u, ("x", "y"), at()) for u in users]
    rows = [("a0", "x", "purchase", at(minutes=5), 10.0), ("a1", "x", "purchase", at(minutes=5), 10.0),
            ("a2", "y", "view", at(minutes=1), None), ("a3", "y", "dislike", at(minutes=1), None),
            ("a3", "x", "not_interested", at(minutes=2), None),
            ("a0", "z", "view", at(days=2), None), ("a1", "x", "view", at(minutes=10), None),
            ("a4", "z", "view", at(days=8), None),
            *((f"b{n}", "x", "purchase", at(minutes=5), 20.0) for n in range(8)),
            ("b8", "y", "cart", at(minutes=3), None), ("b0", "z", "view", at(days=3), None)]
    events = sorted(({"pk": n, "user_id": u, "item_id": i, "type": t, "ts_us": ts, "price": p, "impression_id": None}
                     for n, (u, i, t, ts, p) in enumerate(rows)), key=lambda e: e["ts_us"])
    return assignments, impressions, events


def test_a_report_over_hand_made_records():
    report = build_report(EXPERIMENT, *records(), T0 + timedelta(days=10))
    a, b = report.arms
    assert (a.shoppers, a.impressions, a.clicks, a.carts, a.purchases, a.revenue) == (10, 10, 3, 2, 2, 20.0)
    assert (b.shoppers, b.impressions, b.clicks, b.carts, b.purchases, b.revenue) == (10, 10, 9, 9, 8, 160.0)
    assert (a.negative_events, b.negative_events) == (2, 0)
    assert (a.returning, b.returning) == (1, 1)
    e = {key: (a.estimates[key], b.estimates[key]) for key in a.estimates}
    assert [e["ctr"][0].value, e["ctr"][1].value] == [0.3, 0.9]
    assert [e["cart_rate"][0].value, e["conversion_rate"][0].value, e["negative_rate"][0].value] == [0.2, 0.2, 0.1]
    assert e["return_rate"][0].value == e["return_rate"][1].value == 0.1
    # conversion 2/10 vs 8/10: pooled 0.5, z = 0.6 / sqrt(0.25 * 0.2)
    assert e["conversion_rate"][1].diff == pytest.approx(0.6)
    assert e["conversion_rate"][1].p_value == pytest.approx(math.erfc(0.6 / math.sqrt(0.05) / math.sqrt(2)))
    assert e["conversion_rate"][0].p_value is None and e["conversion_rate"][0].diff is None  # the control
    assert (e["conversion_rate"][1].low, e["conversion_rate"][1].high) == pytest.approx(wilson(8, 10))
    # revenue per shopper, zeros included: a (10, 10, 0 x 8) mean 2, b (20 x 8, 0, 0) mean 16
    assert (e["revenue_per_shopper"][0].value, e["revenue_per_shopper"][1].value) == (2.0, 16.0)
    assert e["revenue_per_shopper"][1].p_value == pytest.approx(0.000399, abs=1e-6)  # Welch, t 4.696, df 13.2
    assert e["revenue_per_impression"][1].value == 16.0
    assert e["return_rate"][1].p_value == 1.0
    assert (report.srm_chi2, report.srm_p, report.srm) == (0.0, 1.0, False)
    assert report.primary == "conversion_rate" and report.winner == "b"


def test_credit_ends_with_the_window_and_a_shorter_one_credits_less():
    short = Experiment("hand", ("a", "b"), (0.5, 0.5), "purchase", 0.05, "running", T0)  # 3 minutes
    a, b = build_report(short, *records(), T0 + timedelta(days=10)).arms
    assert (a.purchases, b.purchases, a.clicks, b.carts) == (0, 0, 1, 1)  # only the 1-3 minute events count


def test_the_winner_needs_significance_and_a_mismatch_is_flagged():
    assignments, impressions, events = records()
    few = [i for i in impressions if i.user_id in ("a0", "a5", "b0", "b1")]
    report = build_report(EXPERIMENT, {u: assignments[u] for u in ("a0", "a5", "b0", "b1")}, few, events,
                          T0 + timedelta(days=10))
    assert [a.purchases for a in report.arms] == [1, 2]
    assert report.winner is None  # 1/2 vs 2/2 proves nothing
    skewed = {**{f"a{n}": "a" for n in range(40)}, **{f"b{n}": "b" for n in range(10)}}
    flagged = build_report(EXPERIMENT, skewed, [], [], T0)
    assert flagged.srm_chi2 == pytest.approx(18.0) and flagged.srm_p == pytest.approx(math.erfc(3.0))
    assert flagged.srm and "SAMPLE-RATIO MISMATCH" in flagged.verdict()
    assert flagged.arms[0].estimates["ctr"].value is None and flagged.winner is None  # nothing served yet


def test_a_control_that_beats_every_treatment_wins_too():
    assignments, impressions, events = records()
    swapped = Experiment("hand", ("b", "a"), (0.5, 0.5), "revenue", 24.0, "running", T0)
    report = build_report(swapped, assignments, impressions, events, T0 + timedelta(days=10))
    assert report.arms[0].arm == "b" and report.primary == "revenue_per_shopper" and report.winner == "b"


def test_the_report_serialises_prints_and_plots(tmp_path):
    report = build_report(EXPERIMENT, *records(), T0 + timedelta(days=10))
    path = tmp_path / "report.json"
    report.to_json(path)
    data = json.loads(path.read_text())
    assert data == report.to_dict()
    assert data["control"] == "a" and data["winner"] == "b" and data["srm"]["mismatch"] is False
    assert [arm["arm"] for arm in data["arms"]] == ["a", "b"]
    assert data["arms"][1]["conversion_rate"]["value"] == 0.8 and data["arms"][0]["negative_events"] == 2
    console = Console(width=200, record=True)
    console.print(report.table())
    text = console.export_text()
    assert "conversion rate *" in text and "p=0.00729" in text
    png = report.plot(tmp_path / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
