"""Stores in states only tests need: an older schema, an empty one (synthetic full stores:
:func:`harness.store.synthetic.seed_database`)."""

from __future__ import annotations

from harness.store import Store


def make_old_schema(url: str, revision: str = "0001") -> None:
    """A store migrated only to ``revision``: what an older archbench left behind."""
    from alembic import command

    from harness.store import engine as eng

    e = eng.create(url)
    cfg = eng._alembic_config()
    with e.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    e.dispose()


def make_empty(url: str) -> None:
    """A store with the newest schema and no runs."""
    Store(url).close()
