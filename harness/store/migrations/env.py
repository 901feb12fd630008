"""Alembic environment: archbench always hands in an open connection (see harness.store.migrate)."""

from alembic import context

from harness.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
