"""The Experiments page through Streamlit's AppTest (no browser): it starts an experiment
from its form, shows the library's report (the same cells as `stylesense experiment report`),
the verdict, the chart and the online feedback rate, and stops a running experiment."""

from __future__ import annotations

from pathlib import Path

import pytest

from stylesense.engine import StyleSense
from stylesense.events import NewEvent
from stylesense.ui.common import HOME_ENV

from recsys_fixtures import block_shop

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

PAGE = Path(__file__).parents[1] / "src" / "stylesense" / "ui" / "views" / "experiments.py"


@pytest.fixture
def shop(tmp_path, monkeypatch) -> StyleSense:
    ss = block_shop(tmp_path / "home", 60, 40, 4, 6, seed=5)
    ss.behaviour.train("popular")
    ss.behaviour.train("itemknn", {"threads": 1})
    monkeypatch.setenv(HOME_ENV, str(ss.home.root))
    monkeypatch.setenv("STYLESENSE_THREADS", "1")
    return ss


def page() -> AppTest:
    return AppTest.from_file(str(PAGE), default_timeout=120).run()


def clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_the_form_starts_an_experiment(shop):
    at = page()
    clean(at)
    assert any("No experiments yet" in i.value for i in at.info)
    at.text_input(key="exp_new_name").set_value("from-the-page")
    at.multiselect(key="exp_new_arms").set_value(["popular", "itemknn"])
    at.text_input(key="exp_new_split").set_value("80,20")
    at.selectbox(key="exp_new_metric").set_value("click")
    next(b for b in at.button if b.label == "Start").click().run()
    clean(at)
    started = StyleSense(shop.home.root, threads=1).experiments.get("from-the-page")
    assert (started.arms, started.split, started.metric, started.running) == (("popular", "itemknn"), (0.8, 0.2),
                                                                             "click", True)
    assert at.selectbox(key="exp_name").value == "from-the-page"


def test_the_page_shows_the_librarys_report_and_stops_the_experiment(shop):
    shop.experiments.create("shown", ["popular", "itemknn"])
    for user in shop.behaviour.events.users()[:24]:
        served = shop.experiments.recommend_for(user, 4)
        shop.behaviour.add_events([NewEvent(user, served.items[0].item_id, "click", impression_id=served.impression_id),
                                   NewEvent(user, served.items[1].item_id, "dislike")])
    at = page()
    clean(at)
    report = shop.experiments.report("shown")
    table = at.dataframe[0].value
    assert list(table.columns) == ["measure", "popular", "itemknn"]
    assert [list(row) for row in table.itertuples(index=False)] == [[label, *cells] for label, cells in report.rows()]
    assert table.set_index("measure").loc["shoppers"].tolist() == [str(a.shoppers) for a in report.arms]
    assert table.set_index("measure").loc["negative events"].tolist() == [str(a.shoppers) for a in report.arms]
    assert any(report.verdict() == m.value for m in [*at.info, *at.success, *at.warning])
    assert len(at.get("image")) == 1  # the chart
    online = at.dataframe[1].value
    assert dict(zip(online["model"], online["positive"])) == {r.model: r.positive for r in shop.experiments.online()}

    at.button(key="exp_stop").click().run()
    clean(at)
    assert not StyleSense(shop.home.root, threads=1).experiments.get("shown").running
    assert not any(b.key == "exp_stop" for b in at.button)
