"""The schema of the first migrated release: catalogue, events, shoppers, jobs, API keys and
experiments.

Each table is created only where the database lacks it: a home made before migrations (its
tables made by ``create_all`` when it was opened) keeps its tables and rows, and is stamped.
Columns such homes may lack are added by the stores' ``_add_missing_columns``, as before.

Revision ID: 0001
Revises:
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_PK64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # 64-bit on Postgres; SQLite's rowid needs INTEGER


def _items() -> None:
    op.create_table(
        "items",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(length=255), nullable=False),
        sa.Column("attrs", sa.JSON(), nullable=False),
        sa.Column("image_path", sa.String(length=4096), nullable=True),
        sa.Column("image_hash", sa.String(length=64), nullable=True),
        sa.Column("features", sa.LargeBinary(), nullable=True),
        sa.Column("features_version", sa.Integer(), nullable=False),
        sa.Column("indexed_version", sa.Integer(), nullable=True),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("in_stock", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_items_hidden", "items", ["hidden"])
    op.create_index("ix_items_in_stock", "items", ["in_stock"])
    op.create_index("ix_items_item_id", "items", ["item_id"], unique=True)
    op.create_index("ix_items_removed", "items", ["removed"])


def _events() -> None:
    op.create_table(
        "events",
        sa.Column("pk", _PK64, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("item_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("session_id", sa.String(length=255), nullable=True),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("labels", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("impression_id", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("user_id", "item_id", "type", "ts_us", "seq", name="uq_events_key"),
    )
    op.create_index("uq_events_event_id", "events", ["event_id"], unique=True)


def _users() -> None:
    op.create_table(
        "users",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("subscribe", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_users_user_id", "users", ["user_id"], unique=True)


def _jobs() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("job_id"),
    )


def _api_keys() -> None:
    op.create_table(
        "api_keys",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key_id", sa.String(length=12), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("rate", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_api_keys_key_id", "api_keys", ["key_id"], unique=True)
    op.create_index("ix_api_keys_name", "api_keys", ["name"])


def _experiments() -> None:
    op.create_table(
        "experiments",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("arms", sa.JSON(), nullable=False),
        sa.Column("split", sa.JSON(), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("window_hours", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_us", sa.BigInteger(), nullable=False),
        sa.Column("stopped_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("name"),
    )
    running = sa.text("status = 'running'")  # at most one running experiment
    op.create_index("uq_experiments_running", "experiments", ["status"], unique=True,
                    sqlite_where=running, postgresql_where=running)


def _experiment_assignments() -> None:
    op.create_table(
        "experiment_assignments",
        sa.Column("pk", _PK64, autoincrement=True, nullable=False),
        sa.Column("experiment", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("experiment", "user_id", name="uq_assignment"),
    )


def _impressions() -> None:
    op.create_table(
        "impressions",
        sa.Column("pk", _PK64, autoincrement=True, nullable=False),
        sa.Column("impression_id", sa.String(length=64), nullable=False),
        sa.Column("experiment", sa.String(length=64), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("impression_id"),
    )
    op.create_index("ix_impressions_experiment", "impressions", ["experiment", "ts_us"])
    op.create_index("ix_impressions_ts", "impressions", ["ts_us"])
    op.create_index("ix_impressions_user", "impressions", ["user_id", "ts_us"])


_TABLES: dict[str, Callable[[], None]] = {
    "items": _items, "events": _events, "users": _users, "jobs": _jobs, "api_keys": _api_keys,
    "experiments": _experiments, "experiment_assignments": _experiment_assignments, "impressions": _impressions,
}


def upgrade() -> None:
    have = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in _TABLES.items():
        if name not in have:
            create()
    # ix_items_updated_at came after the items table (create_all adds no index to a table it finds)
    op.create_index("ix_items_updated_at", "items", ["updated_at"], if_not_exists=True)
