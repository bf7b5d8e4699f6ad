"""Indexes for the queries the models and the API make on the event log: a shopper's history
newest first (``EventStore.latest``, per-user time ranges), time ranges over everyone (trending,
the dashboards' periods, the newest event time) and per-item counts by type (popularity, an
item's events). The key's unique index (user, item, type, time, seq) already serves
``frame(users=...)``; the primary key serves ``max_pk`` and ``frame(after_pk=...)``.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_user_ts", "events", ["user_id", "ts_us"], if_not_exists=True)
    op.create_index("ix_events_ts", "events", ["ts_us"], if_not_exists=True)
    op.create_index("ix_events_item_type", "events", ["item_id", "type"], if_not_exists=True)
