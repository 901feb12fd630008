"""The dashboard's pages, run headless with Streamlit's AppTest on seeded databases."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="the dashboard needs streamlit (pip install 'archbench[dashboard]')")
pytest.importorskip("altair", reason="the dashboard needs altair (pip install 'archbench[dashboard]')")

from sqlalchemy import update  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from harness.cli import app as cli  # noqa: E402
from harness.store import Run, Store  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from harness.store.synthetic import seed_database  # noqa: E402
from tests.dashboard.seed import make_empty, make_old_schema  # noqa: E402

APP = ROOT / "dashboard" / "app.py"
TIMEOUT = 300  # seconds per script run: generous, for loaded CI machines
PROBES = ["mqar", "flipflop", "needle", "multiplication", "modular_addition", "state_tracking", "induction"]


@pytest.fixture(scope="module")
def small_db(tmp_path_factory) -> str:
    """4 architectures x 2 sizes x every probe's settings x 2 lrs x 2 seeds; the d64 runs
    belong to sweep ``wide``, the rest to ``quick``; a few runs failed or are queued."""
    url = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'results.db'}"
    seed_database(url, archs=["transformer", "fox", "path", "nope"], sizes=[(32, 2, 2), (64, 2, 2)],
                  lrs=[1e-3, 3e-3], seeds=2, curve_points=6)
    store = Store(url)
    with store.session() as s:
        s.execute(update(Run).where(Run.size == "d64-L2-H2").values(sweep="wide"))
    store.close()
    return url


def run_app(url: str, monkeypatch) -> AppTest:  # noqa: ANN001
    monkeypatch.setenv("ARCHBENCH_DB", url)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def cli_board(url: str, *args: str) -> list[dict]:
    res = CliRunner().invoke(cli, ["leaderboard", "--format", "json", "--db", url, *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def board(at: AppTest):  # noqa: ANN201
    """The leaderboard table's data (a display-only ``st.dataframe`` carries no key in AppTest's
    tree, so it is found by its columns)."""
    for df in at.dataframe:
        value = df.value
        if {"rank", "arch", "score", "ci_low"} <= set(value.columns):
            return value
    raise AssertionError(f"no leaderboard table among {len(at.dataframe)} tables")


def db_state(url: str) -> dict:
    """What a write to the SQLite store at ``url`` would change, wherever it lands.

    The store runs in WAL mode: a committed write goes to ``-wal`` first and reaches the main
    file only at a checkpoint, so the main file's hash alone misses it.  Recorded: the
    names of the files in the database's directory; the sha256 of the main file and of the
    WAL (a missing WAL counts as an empty one: the first reader of a WAL database creates an
    empty ``-wal`` and its index ``-shm``); and the database's content as SQL, read through a
    read-only connection, which sees rows still in the WAL.  ``-shm`` is left out: it is
    the WAL's shared-memory index, where every reader records its read position.
    """
    import sqlite3

    path = Path(url.removeprefix("sqlite:///"))
    wal = path.with_name(path.name + "-wal")
    state = {
        "files": sorted(p.name for p in path.parent.iterdir() if p.name != path.name + "-shm"
                        and not (p == wal and p.stat().st_size == 0)),
        "main": hashlib.sha256(path.read_bytes()).hexdigest(),
        "wal": hashlib.sha256(wal.read_bytes() if wal.exists() else b"").hexdigest(),
    }
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # read-only: closing it checkpoints nothing
    try:
        state["content"] = hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    finally:
        con.close()
    return state


def test_probe_choice_follows_the_task_registry(small_db, monkeypatch):
    """A probe registered (here: in-process, as a plugin would) is offered without any runs."""
    from tasks import get_task_class, registry, task_names

    monkeypatch.setitem(registry.TASKS._items, "zz_new_probe", get_task_class("mqar"))
    at = run_app(small_db, monkeypatch)
    at.switch_page("views/probes.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [o.split(" (")[0] for o in at.selectbox(key="probe_task").options]
    assert shown == task_names() and "zz_new_probe" in shown


def test_every_page_renders_and_writes_nothing(small_db, monkeypatch):
    before = db_state(small_db)
    at = run_app(small_db, monkeypatch)
    latest = cli_board(small_db)  # the CLI ranks the latest sweep by default, and so does the page
    assert board(at).shape[0] == len(latest) == 4
    at.multiselect(key="lb_sweep").set_value([]).run()  # cleared: every run
    assert board(at).shape[0] == len(cli_board(small_db, "--all")) == 8  # 4 archs x 2 sizes
    at.switch_page("views/probes.py").run()
    assert not at.exception, [e.value for e in at.exception]
    for task in PROBES:
        at.selectbox(key="probe_task").set_value(task).run()
        assert not at.exception, (task, [e.value for e in at.exception])
        assert not at.info, (task, [i.value for i in at.info])  # every probe has data here
        assert len(at.get("vega_lite_chart")) >= 2, task  # difficulty plot + the probe's own
    at.switch_page("views/kernels.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("vega_lite_chart")) >= 4  # time, TFLOP/s, share of peak, history
    at.radio(key="k_hist_x").set_value("commit order").run()
    assert not at.exception
    at.switch_page("views/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert db_state(small_db) == before  # the dashboard never writes


def test_leaderboard_ranks_like_the_cli(small_db, monkeypatch):
    at = run_app(small_db, monkeypatch)
    shown = board(at)
    expected = cli_board(small_db)
    assert list(shown["arch"]) == [r["arch"] for r in expected]
    assert list(shown["size"]) == [r["size"] for r in expected]
    assert list(shown["rank"]) == [r["rank"] for r in expected]
    for col in ("score", "ci_low", "ci_high", "win_rate", "n_params", "runs", "failed", *PROBES):
        want = [float("nan") if r[col] is None else r[col] for r in expected]  # JSON writes NaN as null
        assert shown[col].tolist() == pytest.approx(want, abs=1e-9, nan_ok=True), col
    top = at.metric[0]
    assert top.value == expected[0]["arch"]

    at.multiselect(key="lb_sweep").set_value(["wide"]).run()
    shown = board(at)
    wide = cli_board(small_db, "--sweep", "wide")
    assert set(shown["size"]) == {"d64-L2-H2"}
    assert list(shown["arch"]) == [r["arch"] for r in wide]
    assert shown["score"].tolist() == pytest.approx([r["score"] for r in wide])


def test_filters_change_the_rows(small_db, monkeypatch):
    at = run_app(small_db, monkeypatch)
    at.multiselect(key="lb_sweep").set_value([]).run()
    full = board(at)
    at.multiselect(key="lb_d_model").set_value([32]).run()
    d32 = board(at)
    assert len(d32) == 4 and set(d32["size"]) == {"d32-L2-H2"}
    at.multiselect(key="lb_d_model").set_value([]).run()
    at.multiselect(key="lb_task").set_value(["needle"]).run()
    needle = board(at)
    assert [c for c in needle.columns if c in PROBES] == ["needle"]
    assert (needle["settings"] == 2).all()  # the two needle settings
    at.multiselect(key="lb_setting").set_value([sorted(set(needle_settings(small_db)))[0]]).run()
    assert (board(at)["settings"] == 1).all()
    at.multiselect(key="lb_setting").set_value([]).run()
    at.multiselect(key="lb_task").set_value([]).run()
    at.number_input(key="lb_min_seeds").set_value(2).run()
    two = board(at)
    assert two["runs"].sum() < full["runs"].sum()  # settings left with one finished seed drop out
    assert not at.exception


def run_counts(url: str, where: str) -> tuple[int, int]:
    """Runs matching the SQL condition ``where``, and all runs, counted in the database."""
    from sqlalchemy import text

    store = Store(url, readonly=True)
    try:
        with store.session() as s:
            return (s.execute(text(f"select count(*) from runs where {where}")).scalar(),
                    s.execute(text("select count(*) from runs")).scalar())
    finally:
        store.close()


def needle_settings(url: str) -> list[str]:
    store = Store(url, readonly=True)
    try:
        return list(store.score_frame(task="needle")["task_setting"])
    finally:
        store.close()


def test_runs_page_search_detail_and_diff(small_db, monkeypatch):
    at = run_app(small_db, monkeypatch)
    at.switch_page("views/runs.py").run()
    at.text_input(key="runs_search").set_value("fox needle").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    n_fox_needle, n_runs = run_counts(small_db, "arch_label = 'fox' and task = 'needle'")
    assert n_fox_needle >= 8  # 2 sizes x 2 needle settings x 2 lrs x 2 seeds, some not finished
    assert len(table) == n_fox_needle
    assert set(table["arch_label"]) == {"fox"} and set(table["task"]) == {"needle"}
    assert f"{n_fox_needle} of {n_runs} runs" in " ".join(c.value for c in at.caption)
    assert at.json  # config and environment
    assert any("checkpoints/" in c.value for c in at.code)
    # two runs that differ only in their seed: the diff shows exactly that key
    a = table.iloc[0]
    twin = table[(table["arch_label"] == a["arch_label"]) & (table["size"] == a["size"])
                 & (table["task_setting"] == a["task_setting"]) & (table["lr"] == a["lr"])
                 & (table["seed"] != a["seed"])]
    at.selectbox(key="runs_a").set_value(a["id"])
    at.selectbox(key="runs_b").set_value(twin["id"].iloc[0])
    at.checkbox(key="runs_only_diff").check().run()
    assert not at.exception, [e.value for e in at.exception]
    diff = at.dataframe[-1].value
    assert list(diff["key"]) == ["seed"]
    at.text_input(key="runs_search").set_value("no-such-run-anywhere").run()
    assert not at.exception
    assert "0 of" in " ".join(c.value for c in at.caption)


@pytest.mark.parametrize("make, needle, command", [
    (None, "No results yet", "archbench suite quick"),  # the file does not exist
    (make_empty, "holds no runs", "archbench suite quick"),
    (make_old_schema, "older schema", "archbench db upgrade"),
])
def test_guidance_instead_of_a_traceback(tmp_path, monkeypatch, make, needle, command):
    path = tmp_path / "results.db"
    url = f"sqlite:///{path}"
    if make is not None:
        make(url)
        before = db_state(url)
    at = run_app(url, monkeypatch)
    text = " ".join(e.value for e in [*at.info, *at.warning, *at.error])
    assert needle in text
    assert any(command in c.value for c in at.code)
    assert path.exists() == (make is not None)  # a missing database is not created
    if make is not None:
        assert db_state(url) == before  # an empty or old store is neither filled nor migrated
