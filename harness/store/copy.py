"""``archbench db copy SRC DST``: every row of one store into another (SQLite <-> PostgreSQL).

The destination is created and migrated like any store, and must be empty: a copy never
merges into results that are already there (ids would collide, and two stores' runs of one
config would fight over one row).  All tables are copied in one transaction on the
destination, parents before children, in batches streamed from the source, so a copy that
fails half-way leaves the destination as empty as it was; PostgreSQL's id sequences are
then moved past the copied ids, so new rows do not collide with them.  Both stores must be
at the newest schema (``archbench db upgrade`` the source first).  Row counts are checked
table by table after the commit.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import JSON, Column, MetaData, Table, func, insert, select, text
from sqlalchemy.engine import Connection, make_url

from harness.errors import UserError
from harness.store import Store
from harness.store.schema import Base

BATCH = 2_000


def _database(url: str) -> tuple:
    """What ``url`` points at, for telling two URLs of one database apart from two databases:
    an SQLite file by its absolute path (``r.db``, ``./r.db`` and ``sqlite:////abs/r.db`` are
    one file), a server database by backend, host, port and name (whatever the driver)."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        db = u.database or ""
        return (backend, db if db in ("", ":memory:") else str(Path(db).resolve()))
    return (backend, u.host, u.port, u.database)


def _writable(table: Table) -> Table:
    """``table`` for inserting copied rows, its nullable JSON columns writing ``None`` as SQL NULL.

    Reading a JSON column gives ``None`` for SQL NULL, and SQLAlchemy's JSON type writes
    ``None`` back as the JSON text ``null`` unless told otherwise: every NULL (an
    ``attempt_log`` never written, say) would arrive as ``'null'``, which ``IS NULL`` no
    longer finds.  NOT NULL JSON columns keep the default (there ``None`` can only have been
    the JSON ``null``).
    """
    cols = [Column(c.name, JSON(none_as_null=True) if isinstance(c.type, JSON) and c.nullable else c.type,
                   key=c.key, primary_key=c.primary_key) for c in table.columns]
    return Table(table.name, MetaData(), *cols)


def _counts(conn: Connection) -> dict[str, int]:
    return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in Base.metadata.sorted_tables}


def copy_store(src_url: str, dst_url: str) -> dict[str, int]:
    """Copy every row of the store at ``src_url`` into the empty store at ``dst_url``; rows per table."""
    from harness.store import resolve_url

    src_url, dst_url = resolve_url(src_url), resolve_url(dst_url)
    if _database(src_url) == _database(dst_url):
        raise UserError("db copy needs two different databases; SRC and DST are the same")
    src = Store(src_url, readonly=True)
    try:
        dst = Store(dst_url)
    except BaseException:
        src.close()
        raise
    try:
        return _copy(src, dst)
    finally:
        src.close()
        dst.close()


def _copy(src: Store, dst: Store) -> dict[str, int]:
    with dst.engine.connect() as conn:
        held = {k: v for k, v in _counts(conn).items() if v}
    if held:
        what = ", ".join(f"{n} {t}" for t, n in held.items())
        raise UserError(f"{dst.url} already holds results ({what}); copy into an empty database "
                        f"(create a new one, or a new SQLite file)")
    with src.engine.connect() as read, dst.engine.begin() as write:
        # the source may be written to meanwhile (a sweep running): every table and the counts
        # are read in one transaction, on PostgreSQL a REPEATABLE READ one (a single snapshot;
        # SQLite's read transaction is one already), so the copy is the store at one moment
        if read.dialect.name == "postgresql":
            read.execution_options(isolation_level="REPEATABLE READ")
        want = _counts(read)
        for table in Base.metadata.sorted_tables:  # parents (environments, runs) before children
            rows = read.execution_options(yield_per=BATCH).execute(select(table).order_by(*table.primary_key))
            into = insert(_writable(table))
            for chunk in rows.mappings().partitions(BATCH):
                write.execute(into, [dict(r) for r in chunk])
        if write.dialect.name == "postgresql":
            for table in Base.metadata.sorted_tables:
                for col in table.primary_key:
                    if col.autoincrement is True or (col.autoincrement == "auto" and col.type.python_type is int):
                        write.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col.name}'), "
                                           f"COALESCE((SELECT MAX({col.name}) FROM {table.name}), 0) + 1, false)"))
    with dst.engine.connect() as conn:
        got = _counts(conn)
    if got != want:
        bad = {t: (want[t], got.get(t)) for t in want if want[t] != got.get(t)}
        raise RuntimeError(f"db copy: row counts differ after the copy (table: source, destination): {bad}")
    return got
