"""The session's embedded Postgres: a database per test, pgvector available, rows isolated."""

import sqlalchemy as sa


def test_fresh_database_is_empty_and_has_pgvector(fresh_database: str) -> None:
    engine = sa.create_engine(fresh_database)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
            conn.execute(sa.text("CREATE TABLE v (id int PRIMARY KEY, e vector(3))"))
            conn.execute(sa.text("INSERT INTO v VALUES (1, '[1,0,0]'), (2, '[0,1,0]')"))
            nearest = conn.execute(sa.text("SELECT id FROM v ORDER BY e <=> '[0.9,0.1,0]' LIMIT 1")).scalar()
        assert nearest == 1
    finally:
        engine.dispose()


def test_each_test_gets_its_own_database(fresh_database: str) -> None:
    engine = sa.create_engine(fresh_database)
    try:
        with engine.connect() as conn:
            tables = conn.execute(sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar()
        assert tables == 0  # the previous test's table is in another database
    finally:
        engine.dispose()
