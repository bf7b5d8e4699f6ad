"""An index on when each shopper's profile was last written: a served ranker asks for the
newest time on every request (``UserStore.last_change``) and reads only the profiles written
since its own (``UserStore.attributes(since=...)``), so neither may scan the table.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_users_updated_at", "users", ["updated_at"], if_not_exists=True)
