"""No-skill floors of runs stored before archbench recorded them (schema 0003).

A run's floor is the strongest of uniform chance and its task's trivial strategies,
scored on the run's test split (:meth:`tasks.Task.floor`).  Runs trained since record it
as they finish; for older ones :func:`backfill_floors` regenerates the test split from the
stored config and seed (every split is a pure function of them) and scores the
strategies there.  A run whose task is not registered (a plugin that is not loaded) or
whose config no longer validates keeps a NULL floor, and the ranking falls back to chance.
``archbench db upgrade`` (:func:`upgrade_store`) migrates the schema, then backfills.
"""

from __future__ import annotations

from harness.store import Store


def backfill_floors(store: Store) -> tuple[int, dict[str, str]]:
    """Fill the missing floors; returns (how many were filled, run id -> why not)."""
    from tasks import make_task

    floors: dict[str, tuple[float, str]] = {}
    skipped: dict[str, str] = {}
    for run_id, config, seed in store.runs_without_floor():
        task_cfg = (config or {}).get("task") or {}
        try:
            task = make_task(task_cfg["name"], task_cfg.get("params") or {})
            data = task.generate(task.test_split, seed=seed)
            floors[run_id] = task.floor(data, task.test_split)
        except Exception as e:  # noqa: BLE001  (any reason leaves the run at chance, and says why)
            skipped[run_id] = f"{type(e).__name__}: {e}"
    if floors:
        store.set_floors(floors)
    return len(floors), skipped


def upgrade_store(db: str | None) -> list[str]:
    """``archbench db upgrade``: migrate the database at ``db`` to the newest schema, then
    backfill the floors its older runs lack; returns what was done, in lines for the user."""
    from harness.store import engine as eng

    url = eng.resolve_url(db)
    before, after = eng.upgrade(eng.create(url))
    lines = [f"{url}: schema {before or 'empty'} -> {after}"]
    filled, skipped = backfill_floors(Store(url))
    if filled or skipped:
        lines.append(f"no-skill floors computed for {filled} runs from their stored configs"
                     + (f"; {len(skipped)} left at chance (e.g. {next(iter(skipped.values()))})" if skipped else ""))
    return lines
