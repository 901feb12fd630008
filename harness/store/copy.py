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

from sqlalchemy import func, insert, select, text

from harness.errors import UserError
from harness.store import Store
from harness.store.schema import Base

BATCH = 2_000


def _counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in Base.metadata.sorted_tables}


def copy_store(src_url: str, dst_url: str) -> dict[str, int]:
    """Copy every row of the store at ``src_url`` into the empty store at ``dst_url``; rows per table."""
    from harness.store import resolve_url

    if resolve_url(src_url) == resolve_url(dst_url):
        raise UserError("db copy needs two different databases; SRC and DST are the same")
    src = Store(src_url, readonly=True)
    dst = Store(dst_url)
    if dst.url == src.url:
        raise UserError("db copy needs two different databases; SRC and DST are the same")
    held = {k: v for k, v in _counts(dst).items() if v}
    if held:
        what = ", ".join(f"{n} {t}" for t, n in held.items())
        raise UserError(f"{dst.url} already holds results ({what}); copy into an empty database "
                        f"(create a new one, or a new SQLite file)")
    want = _counts(src)
    with src.engine.connect() as read, dst.engine.begin() as write:
        for table in Base.metadata.sorted_tables:  # parents (environments, runs) before children
            rows = read.execution_options(yield_per=BATCH).execute(select(table).order_by(*table.primary_key))
            for chunk in rows.mappings().partitions(BATCH):
                write.execute(insert(table), [dict(r) for r in chunk])
        if write.dialect.name == "postgresql":
            for table in Base.metadata.sorted_tables:
                for col in table.primary_key:
                    if col.autoincrement is True or (col.autoincrement == "auto" and col.type.python_type is int):
                        write.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col.name}'), "
                                           f"COALESCE((SELECT MAX({col.name}) FROM {table.name}), 0) + 1, false)"))
    got = _counts(dst)
    if got != want:
        bad = {t: (want[t], got.get(t)) for t in want if want[t] != got.get(t)}
        raise RuntimeError(f"db copy: row counts differ after the copy (table: source, destination): {bad}")
    src.close()
    dst.close()
    return got
