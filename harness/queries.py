"""Read-only queries over the results store, shaped for the dashboard.

Everything here reads; nothing writes.  Each function takes a :class:`~harness.store.Store`
opened with ``readonly=True`` (see :func:`open_store`) and returns a pandas frame or plain
data.  The SQL is plain SQLAlchemy (no dialect-specific functions), so the same queries run
on SQLite and PostgreSQL; each one selects only the columns its page shows.

The ranking is not re-implemented: :func:`leaderboard` filters a
:meth:`Store.score_frame` and hands it to :func:`harness.ranking.rank`, the function behind
``archbench leaderboard``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, event, func, or_, select

from harness.benchmark_board import (BENCHMARK_BOARD_COLUMNS, BenchmarkBoard, benchmark_board_columns,  # noqa: F401
                                     cell_label, is_probe, latest_rows, model_keys, rank_benchmarks, short_id,
                                     shown_table)
from harness.errors import UserError
from harness.identity import flatten
from harness.ranking import (BOARD_COLUMNS, Column, Leaderboard, board_columns, choose_lr, prepare,  # noqa: F401
                             rank, task_columns)  # (dashboard: the leaderboard's columns are defined once, there)
from harness.store import BenchmarkScore, Checkpoint, Environment, KernelBenchmark, Metric, Run, Store
from harness.store.schema import Evaluation

NO_SWEEP = "(no sweep)"
"""How runs started outside a sweep (``sweep`` is NULL) are named in filters."""

KERNEL_BASELINE = ("softmax", "sdpa")
"""``kernels.registry.BASELINE``, repeated here because importing that module loads torch."""

_IN_CHUNK = 500  # ids per IN (...) clause: far below every backend's bound-parameter limit


def open_store(url: str | None = None) -> Store:
    """The store at ``url`` (``--db``, ``$ARCHBENCH_DB`` or the default), read-only.

    Read-only twice over: the store never commits, and every connection is opened read-only
    by the database itself (SQLite ``PRAGMA query_only``, PostgreSQL read-only transactions),
    so a write would fail rather than land.  A missing database, one without results or one
    with an older schema raises :class:`harness.errors.UserError` whose message names the
    command that fixes it.
    """
    store = Store(url, readonly=True)
    _read_only_connections(store.engine)
    return store


def _read_only_connections(engine: Engine) -> None:
    backend = engine.dialect.name

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_conn, _record) -> None:  # noqa: ANN001
        cur = dbapi_conn.cursor()
        if backend == "sqlite":
            cur.execute("PRAGMA query_only = ON")
        elif backend == "postgresql":
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        cur.close()
        if backend == "postgresql":
            dbapi_conn.commit()  # a SET inside a transaction that is rolled back would be undone

    engine.dispose()  # the connection pooled while the store checked the schema predates the hook


def _frame(rows: Iterable[Any], columns: Sequence[str]) -> pd.DataFrame:
    # plain tuples: a Row with a column called ``dtype`` would look array-like to pandas
    return pd.DataFrame([tuple(r) for r in rows], columns=list(columns))


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    ids = list(ids)
    for i in range(0, len(ids), _IN_CHUNK):
        yield ids[i:i + _IN_CHUNK]


# -- the leaderboard --------------------------------------------------------------------

def score_frame(store: Store) -> pd.DataFrame:
    """Every finished run (done, failed, diverged) with its headline scores and ids: the
    ranking's input (:meth:`Store.score_frame`)."""
    return store.score_frame()


def filter_scores(df: pd.DataFrame, *, sweeps: Iterable[str] = (), tasks: Iterable[str] = (),
                  settings: Iterable[str] = (), d_model: Iterable[int] = (), n_layers: Iterable[int] = (),
                  min_seeds: int = 1) -> pd.DataFrame:
    """The runs of a :func:`score_frame` that pass the filters; an empty filter keeps all.

    ``min_seeds`` keeps a (setting, learning rate) only when that many distinct seeds
    finished, failed ones included, so every mean the ranking takes rests on at least that
    many seeds.
    """
    keep = pd.Series(True, index=df.index)
    sweeps = set(sweeps)
    if sweeps:
        keep &= df["sweep"].fillna(NO_SWEEP).isin(sweeps)
    for col, values in (("task", tasks), ("task_setting", settings)):
        values = set(values)
        if values:
            keep &= df[col].isin(values)
    for col, values in (("d_model", d_model), ("n_layers", n_layers)):
        values = {int(v) for v in values}
        if values:
            keep &= df[col].isin(values).fillna(False).astype(bool)
    out = df[keep]
    if min_seeds > 1 and not out.empty:
        seeds = out.groupby(["setting_id", "lr"], dropna=False)["seed"].transform("nunique")
        out = out[seeds >= min_seeds]
    return out.reset_index(drop=True)


def leaderboard(df: pd.DataFrame, *, exclude_failed: bool = False, **filters: Any) -> Leaderboard:
    """:func:`harness.ranking.rank` over the filtered runs, as ``archbench leaderboard`` ranks.

    With no filters this is exactly ``rank(store.score_frame())``: the same rows in the
    same order, so the same bootstrap intervals as the CLI prints.
    """
    return rank(filter_scores(df, **filters), exclude_failed=exclude_failed)


def scoped_leaderboard(df: pd.DataFrame, *, sweep: str | None = None, every_sweep: bool = False,
                       exclude_failed: bool = False, **filters: Any) -> tuple[Leaderboard, str]:
    """The leaderboard of one sweep (default: the latest) or of every run, and its scope in words.

    Raises :class:`UserError` for a sweep the store does not hold."""
    if sweep is not None and every_sweep:
        raise UserError("give --sweep NAME or --all, not both")
    if every_sweep:
        scope = "every run (--all)"
    else:
        known = sorted(df["sweep"].dropna().unique())
        if sweep is not None and sweep not in known:
            raise UserError(f"no finished runs of sweep {sweep!r}; the store holds "
                            f"{', '.join(known) or 'no sweeps'} (or use --all)")
        chosen = sweep or latest_sweep(df)
        if chosen is not None:
            filters["sweeps"] = (chosen,)
        scope = (f"sweep {chosen!r}" + ("" if sweep else " (the latest; --sweep NAME or --all for others)")
                 if chosen else "every run")
    return leaderboard(df, exclude_failed=exclude_failed, **filters), scope


def latest_sweep(df: pd.DataFrame) -> str | None:
    """The sweep of the most recently finished run in a :func:`score_frame` (None: no sweeps)."""
    swept = df.dropna(subset=["sweep", "finished_at"])
    return None if swept.empty else str(swept.sort_values(["finished_at", "id"])["sweep"].iloc[-1])


def status_counts(store: Store) -> dict[str, int]:
    return store.status_counts()


# -- probes -----------------------------------------------------------------------------

def probe_names() -> list[str]:
    """The registered probes (built-in, entry points, plugins imported in this process), sorted."""
    from tasks import task_names  # here, not at the top: tasks imports torch, which other pages never need

    return task_names()


def task_run_counts(store: Store) -> dict[str, int]:
    """Finished runs per task."""
    q = select(Run.task, func.count()).where(Run.status == "done").group_by(Run.task)
    with store.session() as s:
        return {t: int(n) for t, n in s.execute(q).all()}


def task_params(store: Store, task: str) -> pd.DataFrame:
    """One row per task setting of ``task``: its resolved knobs (from one run's stored config)."""
    first = (select(Run.task_setting, func.min(Run.id).label("run_id"))
             .where(Run.task == task, Run.status == "done").group_by(Run.task_setting).subquery())
    q = select(first.c.task_setting, Run.config).join(Run, Run.id == first.c.run_id)
    with store.session() as s:
        rows = s.execute(q).all()
    out = []
    for setting, config in rows:
        params = dict(((config or {}).get("task") or {}).get("params") or {})
        for k in ("n_train", "n_val", "n_test"):
            params.pop(k, None)
        out.append({"task_setting": setting, **{k: _knob(v) for k, v in params.items()}})
    return pd.DataFrame(out)


def _knob(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def varying_knobs(params: pd.DataFrame) -> list[str]:
    """Knobs whose value differs between settings and that are numbers (a difficulty axis)."""
    knobs = []
    for c in params.columns:
        if c == "task_setting":
            continue
        vals = params[c].dropna()
        if vals.map(repr).nunique() > 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            knobs.append(c)
    return knobs


def probe_finals(store: Store, task: str, *, chosen_lr: bool = True) -> pd.DataFrame:
    """Final metrics of the ``done`` runs of ``task``, one row per (run, split, name).

    With ``chosen_lr`` only the runs at the learning rate the leaderboard chose for their
    (architecture, size, task setting) are kept, so the plots show what the ranking used.
    Columns: run_id, arch_label, size, task_setting, lr, seed, split, name, value.
    """
    cols = [Run.id, Run.arch_label, Run.size, Run.task_setting, Run.lr, Run.seed, Metric.split, Metric.name,
            Metric.value]
    q = (select(*cols).select_from(Run).join(Metric, Metric.run_id == Run.id)
         .where(Run.task == task, Run.status == "done", Metric.final.is_(True)))
    with store.session() as s:
        df = _frame(s.execute(q).all(), ["run_id", "arch_label", "size", "task_setting", "lr", "seed", "split",
                                         "name", "value"])
    if chosen_lr and not df.empty:
        chosen = chosen_runs(store, task)
        df = df[df["run_id"].isin(set(chosen["id"]))]
    return df.reset_index(drop=True)


def chosen_runs(store: Store, task: str | None = None) -> pd.DataFrame:
    """The finished runs at the learning rate the ranking chose for their setting."""
    sf = store.score_frame(task=task)
    if sf.empty:
        return sf
    runs = prepare(sf)
    return runs.merge(choose_lr(runs)[["setting_id", "lr"]], on=["setting_id", "lr"])


def curve_frame(store: Store, run_ids: Sequence[str], *, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Learning-curve points (``final=False``) of the runs: run_id, split, name, step, value."""
    out = []
    for ids in _chunks(run_ids):
        q = (select(Metric.run_id, Metric.split, Metric.name, Metric.step, Metric.value)
             .where(Metric.run_id.in_(ids), Metric.final.is_(False)))
        if names:
            q = q.where(Metric.name.in_(list(names)))
        with store.session() as s:
            out.extend(s.execute(q).all())
    return _frame(out, ["run_id", "split", "name", "step", "value"]).sort_values(["run_id", "step"],
                                                                                 ignore_index=True)


# -- kernels ----------------------------------------------------------------------------

_KERNEL_COLS = ["id", "op", "impl", "mode", "dtype", "batch", "seq_len", "heads", "head_dim", "causal", "status",
                "error", "median_ms", "tflops", "peak_fraction", "tokens_per_s", "peak_mem_bytes", "device_name",
                "git_sha", "created_at"]

KERNEL_POINT = ["mode", "dtype", "batch", "seq_len", "heads", "head_dim", "causal", "device_name"]
"""A grid point: every kernel row at one point is compared with the SDPA row there."""
KERNEL_KEY = ["op", "impl", *KERNEL_POINT]
"""What one kernel benchmark row measures: an implementation of an op at one grid point."""
KERNEL_COLUMNS = ["op", "impl", "mode", "dtype", "shape", "status", "median_ms", "vs_sdpa", "tokens_per_s", "tflops",
                  "peak_fraction", "peak_mem_bytes", "device_name", "git_sha", "created_at"]
"""The columns ``archbench leaderboard --kernels`` prints."""


def kernel_shape_label(batch: int, seq_len: int, heads: int, head_dim: int, causal: bool = True) -> str:
    """``B1-T256-H4-D64`` (the registry's ``KernelShape.label``), ``-full`` when not causal."""
    return f"B{batch}-T{seq_len}-H{heads}-D{head_dim}" + ("" if causal else "-full")


def kernel_frame(store: Store) -> pd.DataFrame:
    """Every kernel benchmark row (oldest first) with ``shape`` (:func:`kernel_shape_label`)
    and ``kernel`` (``op/impl``) labels."""
    cols = [getattr(KernelBenchmark, c) for c in _KERNEL_COLS]
    with store.session() as s:
        df = _frame(s.execute(select(*cols).order_by(KernelBenchmark.created_at, KernelBenchmark.id)).all(),
                    _KERNEL_COLS)
    if df.empty:
        return df.assign(shape=pd.Series(dtype=str), kernel=pd.Series(dtype=str))
    df["shape"] = [kernel_shape_label(b, t, h, d, c) for b, t, h, d, c in
                   zip(df["batch"], df["seq_len"], df["heads"], df["head_dim"], df["causal"])]
    df["kernel"] = df["op"] + "/" + df["impl"]
    df["created_at"] = pd.to_datetime(df["created_at"])
    return df


def latest_kernels(source: Store | pd.DataFrame) -> pd.DataFrame:
    """The newest row per :data:`KERNEL_KEY` (op, impl, mode, dtype, shape with T, causal,
    device), failed ones included, with ``vs_sdpa``: its time over the newest SDPA row's at
    the same point.  ``source`` is a store, or a :func:`kernel_frame` already read from one.
    The one "latest kernel rows" query: ``archbench leaderboard --kernels`` and the
    dashboard's kernels page both use it."""
    df = kernel_frame(source) if isinstance(source, Store) else source
    if df.empty:
        return df.assign(vs_sdpa=pd.Series(dtype=float))
    latest = df.sort_values(["created_at", "id"]).drop_duplicates(KERNEL_KEY, keep="last")
    base = latest[(latest["op"] == KERNEL_BASELINE[0]) & (latest["impl"] == KERNEL_BASELINE[1])]
    latest = latest.merge(base[[*KERNEL_POINT, "median_ms"]].rename(columns={"median_ms": "_base"}),
                          on=KERNEL_POINT, how="left")
    latest["vs_sdpa"] = latest["median_ms"] / latest["_base"]
    return latest.drop(columns="_base").reset_index(drop=True)


# -- runs -------------------------------------------------------------------------------

_RUN_COLS = ["id", "status", "arch_label", "size", "task", "task_setting", "lr", "seed", "sweep", "step",
             "val_score", "test_score", "duration_s", "created_at"]


def runs_frame(store: Store) -> pd.DataFrame:
    """Every run (newest first) with the columns the runs table shows."""
    cols = [getattr(Run, c) for c in _RUN_COLS]
    with store.session() as s:
        rows = s.execute(select(*cols).order_by(Run.created_at.desc(), Run.id)).all()
    return _frame(rows, _RUN_COLS)


def search_runs(df: pd.DataFrame, text: str) -> pd.DataFrame:
    """Runs whose id, architecture, size, task setting, status or sweep contain every word
    of ``text`` (case-insensitive)."""
    words = [w for w in (text or "").lower().split() if w]
    if not words or df.empty:
        return df
    hay = (df["id"].astype(str) + " " + df["arch_label"].astype(str) + " " + df["size"].astype(str) + " "
           + df["task_setting"].astype(str) + " " + df["status"].astype(str) + " "
           + df["sweep"].fillna("").astype(str)).str.lower()
    keep = pd.Series(True, index=df.index)
    for w in words:
        keep &= hay.str.contains(w, regex=False)
    return df[keep]


def run_detail(store: Store, run_id: str) -> dict[str, Any] | None:
    """One run: its row (config included), environment, checkpoints and metrics."""
    with store.session() as s:
        run = s.get(Run, run_id)
        if run is None:
            return None
        row = {c.key: getattr(run, c.key) for c in Run.__table__.columns}
        env = s.get(Environment, run.environment_id) if run.environment_id else None
        env_row = {c.key: getattr(env, c.key) for c in Environment.__table__.columns} if env else None
        ckpts = [dict(path=c.path, sha256=c.sha256, step=c.step, created_at=c.created_at)
                 for c in s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.id))]
    return dict(run=row, environment=env_row, checkpoints=ckpts, metrics=store.metrics(run_id))


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> pd.DataFrame:
    """Two configs side by side: key, a, b, differs (values shown as text)."""
    fa, fb = flatten(a or {}), flatten(b or {})
    keys = sorted(set(fa) | set(fb))
    missing = object()
    rows = []
    for k in keys:
        va, vb = fa.get(k, missing), fb.get(k, missing)
        rows.append(dict(key=k, a="" if va is missing else repr(va), b="" if vb is missing else repr(vb),
                         differs=va is missing or vb is missing or va != vb))
    return pd.DataFrame(rows, columns=["key", "a", "b", "differs"])


# -- lm-eval benchmarks -------------------------------------------------------------------

_BENCHMARK_COLS = ["id", "model", "model_kind", "model_sha256", "label", "run_id", "benchmark", "group", "metric",
                   "filter", "value", "stderr", "higher_is_better", "n_samples", "num_fewshot", "limit", "task_version",
                   "lm_eval_version", "created_at"]


def benchmark_scores(store: Store, model: str | None = None) -> pd.DataFrame:
    """Every stored lm-eval score (``archbench eval --lm-tasks``), oldest first; with ``model``,
    those of one model: its weights sha256, or what was asked for (a path, ``hf:PATH``)."""
    cols = [getattr(BenchmarkScore, c) for c in _BENCHMARK_COLS]
    q = select(*cols).order_by(BenchmarkScore.created_at, BenchmarkScore.id)
    if model is not None:
        q = q.where(or_(BenchmarkScore.model_sha256 == model, BenchmarkScore.model == model))
    with store.session() as s:
        return _frame(s.execute(q).all(), _BENCHMARK_COLS)


def benchmark_leaderboard(store: Store) -> BenchmarkBoard:
    """Models ranked on their lm-eval scores (:func:`harness.benchmark_board.rank_benchmarks`): what
    ``archbench leaderboard --benchmarks`` prints and the dashboard's benchmarks page shows."""
    return rank_benchmarks(benchmark_scores(store))


def benchmark_models(store: Store) -> pd.DataFrame:
    """One row per model with lm-eval scores, newest first: ``model_key`` (its identity, what
    :func:`model_scores` takes), label, model, model_kind, run_id, last (its latest score's time)."""
    df = benchmark_scores(store)
    cols = ["model_key", "label", "model", "model_kind", "run_id", "last"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df.assign(model_key=model_keys(df), last=df["created_at"])
    return (df.sort_values(["created_at", "id"]).groupby("model_key").tail(1)
            .sort_values(["last", "id"], ascending=False)[cols].reset_index(drop=True))


MODEL_SCORE_COLUMNS = ["kind", "source", "task", "setting", "split", "metric", "value", "stderr", "n", "created_at"]
"""One score of a model (:func:`model_scores`): ``kind`` probe or benchmark; ``source`` where it was
measured (``lm-eval``, ``archbench eval``, ``training run``)."""


def model_scores(store: Store, model: str) -> pd.DataFrame:
    """A model's probe and benchmark scores together (:data:`MODEL_SCORE_COLUMNS`), probes first.

    ``model`` is a model identity (``model_key`` of :func:`benchmark_models`: the weights sha256,
    or a hub id) or what was asked for (a path).  Collected: its latest lm-eval scores per
    (benchmark, metric, filter, few-shot count, limit), ``archbench_*`` tasks counted as probes;
    its latest ``archbench eval`` scores, matched by the checkpoint's sha256 (by path for a
    checkpoint without one); and, for a checkpoint trained by archbench, its run's headline
    test score.
    """
    bench = benchmark_scores(store, model)
    keys = model_keys(bench)
    if (keys == model).any():
        bench = bench[keys == model]
    rows = []
    for r in latest_rows(bench).itertuples() if not bench.empty else ():
        setting = cell_label("", r.num_fewshot, r.limit).strip(" ()")
        if r.filter != "none":
            setting = f"{setting}, filter {r.filter}" if setting else f"filter {r.filter}"
        rows.append(dict(kind="probe" if is_probe(r.benchmark) else "benchmark", source="lm-eval",
                         task=r.benchmark, setting=setting, split=None, metric=r.metric, value=r.value,
                         stderr=r.stderr, n=r.n_samples, created_at=r.created_at))
    shas = sorted(set(bench["model_sha256"].dropna())) or ([model] if bench.empty else [])
    paths = sorted(set(bench.loc[bench["model_sha256"].isna() & (bench["model_kind"] == "archbench"), "model"]))
    rows += _evaluation_scores(store, shas, paths)
    run_ids = sorted(set(bench["run_id"].dropna()))
    rows += _run_scores(store, run_ids)
    out = pd.DataFrame(rows, columns=MODEL_SCORE_COLUMNS)
    order = {"probe": 0, "benchmark": 1}
    return (out.assign(_k=out["kind"].map(order)).sort_values(["_k", "source", "task", "setting", "split", "metric"],
                                                              na_position="first", kind="stable")
            .drop(columns="_k").reset_index(drop=True))


def _evaluation_scores(store: Store, shas: list[str], paths: list[str]) -> list[dict[str, Any]]:
    cond = [Evaluation.checkpoint_sha256.in_(shas)] if shas else []
    cond += [Evaluation.checkpoint_path.in_(paths)] if paths else []
    if not cond:
        return []
    cols = [Evaluation.id, Evaluation.task, Evaluation.task_config, Evaluation.data_file, Evaluation.split,
            Evaluation.name, Evaluation.value, Evaluation.n_examples, Evaluation.created_at]
    with store.session() as s:
        found = s.execute(select(*cols).where(or_(*cond)).order_by(Evaluation.created_at, Evaluation.id)).all()
    latest: dict[tuple, dict[str, Any]] = {}
    for _id, task, config, data_file, split, name, value, n, created in found:
        setting = Path(data_file).name if data_file else _knobs(config)
        latest[(task, setting, split, name)] = dict(kind="probe", source="archbench eval", task=task, setting=setting,
                                                    split=split, metric=name, value=value, stderr=None, n=n,
                                                    created_at=created)
    return list(latest.values())


def _knobs(config: dict[str, Any] | None) -> str:
    """A task config in one line, data sizes left out: ``num_pairs=8, seq_len=64``."""
    params = dict((config or {}).get("params", config or {}))
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())
                     if k not in ("n_train", "n_val", "n_test", "name") and not isinstance(v, (dict, list)))


def _run_scores(store: Store, run_ids: list[str]) -> list[dict[str, Any]]:
    if not run_ids:
        return []
    cols = [Run.task, Run.task_setting, Run.metric, Run.test_score, Run.finished_at]
    with store.session() as s:
        found = s.execute(select(*cols).where(and_(Run.id.in_(run_ids), Run.test_score.is_not(None)))).all()
    return [dict(kind="probe", source="training run", task=task, setting=setting, split="test",
                 metric=metric or "score", value=score, stderr=None, n=None, created_at=finished)
            for task, setting, metric, score, finished in found]
