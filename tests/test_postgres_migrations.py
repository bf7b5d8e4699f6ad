"""The home database's schema comes from Alembic migrations, the same on SQLite and PostgreSQL:
a new database gets every table at the newest revision, exactly what the models declare; a home
made before migrations keeps its rows and is stamped; processes opening a database at once
do not trip over each other; `stylesense db current / upgrade` report it."""

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.config import Config
from typer.testing import CliRunner

from stylesense.catalog.store import Base, make_engine
from stylesense.cli import app
from stylesense.events.store import EventBase
from stylesense.events.users import UserBase
from stylesense.experiments.store import ExperimentBase
from stylesense.jobs import JobBase
from stylesense.migrations import HEAD, current, upgrade
from stylesense.recommenders.published import ModelBase
from stylesense.serving.keys import KeyBase

import stylesense.migrations

BASES = (Base, EventBase, UserBase, JobBase, KeyBase, ExperimentBase, ModelBase)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path: Path) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home.db'}"
    return request.getfixturevalue("fresh_database")


def test_head_is_the_newest_revision_script() -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(stylesense.migrations.__file__).parent))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


def test_a_new_database_gets_exactly_the_schema_the_models_declare(database: str) -> None:
    engine = make_engine(database)
    try:
        assert current(engine) == HEAD
        models = sa.MetaData()
        for base in BASES:
            for table in base.metadata.tables.values():
                table.to_metadata(models)
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), models)
        assert [d for d in differences if d[0] != "remove_table" or d[1].name != "alembic_version"] == []
        indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes("events")}
        assert {"ix_events_user_ts", "ix_events_ts", "ix_events_item_type"} <= indexes
    finally:
        engine.dispose()


def test_opening_a_database_from_several_threads_at_once_migrates_it_once(database: str) -> None:
    engines, errors = [], []

    def open_it() -> None:
        try:
            engines.append(make_engine(database))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == [] and len(engines) == 4
        with engines[0].connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    finally:
        for engine in engines:
            engine.dispose()


def test_a_home_made_before_migrations_keeps_its_rows_and_is_stamped(tmp_path: Path) -> None:
    """The tables as create_all made them before migrations (no event indexes, no version
    table), with rows; `db current` calls it unversioned, `db upgrade` stamps and indexes it."""
    home = tmp_path / "home"
    home.mkdir()
    old = sa.create_engine(f"sqlite:///{home / 'stylesense.db'}")
    legacy = sa.MetaData()
    for base in (Base, EventBase):
        for table in base.metadata.tables.values():
            copy = table.to_metadata(legacy)
            for ix in [ix for ix in copy.indexes if ix.name.startswith("ix_events_")]:
                copy.indexes.discard(ix)
    legacy.create_all(old)
    with old.begin() as conn:
        conn.execute(sa.text("INSERT INTO events (user_id, item_id, type, ts_us, seq) VALUES ('alice', '7', 'purchase', 1, 0)"))
    old.dispose()
    (home / "config.json").write_text("{}")

    runner = CliRunner()
    r = runner.invoke(app, ["--home", str(home), "db", "current"])
    assert r.exit_code == 0 and r.output.startswith("unversioned"), r.output
    r = runner.invoke(app, ["--home", str(home), "db", "upgrade"])
    assert r.exit_code == 0 and f"database at revision {HEAD} (was unversioned)" in r.output, r.output
    r = runner.invoke(app, ["--home", str(home), "db", "current"])
    assert r.output.strip() == f"{HEAD} (newest)"

    engine = make_engine(f"sqlite:///{home / 'stylesense.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT user_id, item_id FROM events")).all() == [("alice", "7")]
        assert {"ix_events_user_ts", "ix_events_ts"} <= {ix["name"] for ix in sa.inspect(engine).get_indexes("events")}
        assert sa.inspect(engine).has_table("api_keys")  # a table the old home never had
        assert upgrade(engine) == (HEAD, HEAD)  # nothing left to do
    finally:
        engine.dispose()


def test_opening_an_up_to_date_database_does_not_load_alembic(tmp_path: Path) -> None:
    """Every command opens the home's database: checking its revision is one query, and
    Alembic (~0.3 s to import) loads only when there is something to upgrade."""
    url = f"sqlite:///{tmp_path / 'home.db'}"
    make_engine(url).dispose()
    probe = f"import sys; from stylesense.catalog.store import make_engine; make_engine({url!r}); print('alembic' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_db_commands_need_a_home(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["--home", str(tmp_path / "nowhere"), "db", "current"])
    assert r.exit_code == 2 and "stylesense init" in r.output
