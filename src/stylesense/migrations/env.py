"""Alembic's entry point, run by :func:`stylesense.migrations.upgrade` on the connection it
hands over (``config.attributes["connection"]``), inside that connection's transaction."""

from alembic import context

context.configure(connection=context.config.attributes["connection"], render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
