"""Opening a results database: URL resolution, SQLite tuning, schema migrations.

SQLite is the embedded default (``sqlite:///results.db`` in the working directory).  It
runs in WAL mode with a busy timeout, and every write transaction begins ``IMMEDIATE``:
a writer takes the write lock when its transaction starts instead of upgrading a read
lock half-way, which is what makes concurrent writers wait their turn rather than fail
with "database is locked".  Any other SQLAlchemy URL (PostgreSQL, say) works unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from harness.errors import NewerSchema, OlderSchema, StoreNotReady, UserError

DEFAULT_URL = "sqlite:///results.db"
BUSY_TIMEOUT_MS = 120_000
MIGRATIONS = Path(__file__).parent / "migrations"


def resolve_url(url: str | None = None) -> str:
    """``--db`` beats ``ARCHBENCH_DB`` beats the default; a bare path means an SQLite file."""
    url = url or os.environ.get("ARCHBENCH_DB") or DEFAULT_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    return url


def _tune_sqlite(engine: Engine, readonly: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:  # noqa: ANN001
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def create(url: str, readonly: bool = False) -> Engine:
    """An engine for ``url``, checked by connecting once; bad URLs raise :class:`UserError`."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
            _tune_sqlite(engine, readonly)
            db = engine.url.database
            if readonly and db and db != ":memory:" and not Path(db).exists():
                raise StoreNotReady(f"no results database at {db!r} yet; run `archbench suite quick` to make one")
            if db and db != ":memory:" and not Path(db).parent.resolve().is_dir():
                raise UserError(f"cannot create {db!r}: directory {str(Path(db).parent)!r} does not exist")
        else:
            # one small pool per process (every worker opens its own Store); pre-ping drops
            # connections a restarted server closed
            engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4, pool_recycle=1800)
        with engine.connect():
            pass
    except (ArgumentError, NoSuchModuleError) as e:
        raise UserError(
            f"cannot use database URL {url!r} ({e.__class__.__name__}: {e}); give --db a SQLAlchemy URL such as "
            f"sqlite:///results.db or postgresql+psycopg://user@host/db (with its driver installed)"
        ) from None
    except OperationalError as e:
        raise UserError(f"cannot open database {url!r}: {e.orig}; check the path or server and permissions") from None
    return engine


MIGRATION_LOCK = 0x61726368  # PostgreSQL advisory lock key ("arch") held while a writer checks and migrates


def _migrations_one_at_a_time(conn: Connection) -> None:
    """Hold, until ``conn``'s transaction ends, PostgreSQL's advisory lock on migrating, so
    processes opening a new database at once create its tables once (the others would fail
    with "relation already exists"); SQLite's IMMEDIATE transaction serialises them already."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def has_tables(engine: Engine) -> bool:
    return bool(inspect(engine).get_table_names())


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to the newest schema, inside one (for SQLite: IMMEDIATE) transaction."""
    cfg = _alembic_config()
    with engine.begin() as conn:
        _migrations_one_at_a_time(conn)
        before = MigrationContext.configure(conn).get_current_revision()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before, head_revision()


def check_schema(engine: Engine, url: str, auto_upgrade: bool) -> None:
    """Bring a writable store to the newest schema; make a read-only one say how.

    Writers decide under the write lock (one IMMEDIATE transaction around the check and
    the migration; on PostgreSQL an advisory lock), so processes opening a new database at
    once create it exactly once.
    """
    head = head_revision()
    try:
        current = current_revision(engine)
    except SQLAlchemyError as e:
        raise UserError(f"cannot read database {url!r}: {e}") from None
    if current == head:
        return
    if not auto_upgrade:
        _refuse_unknown(url, current, has_tables(engine))
        if current is None:
            raise StoreNotReady(f"database {url!r} holds no results yet; run `archbench suite quick` to make some")
        raise OlderSchema(
            f"database {url!r} has an older schema ({current}, newest {head}); run `archbench db upgrade --db {url}`"
        )
    cfg = _alembic_config()
    with engine.begin() as conn:
        _migrations_one_at_a_time(conn)
        current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return
        _refuse_unknown(url, current, bool(inspect(conn).get_table_names()))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _refuse_unknown(url: str, current: str | None, tables: bool) -> None:
    known = {s.revision for s in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}
    if current is not None and current not in known:
        raise NewerSchema(
            f"database {url!r} has schema revision {current}, which this archbench does not know; "
            f"it was written by a newer archbench: upgrade archbench (pip install -U archbench)"
        )
    if current is None and tables:
        raise UserError(f"database {url!r} holds tables that are not an archbench store; use another --db")
