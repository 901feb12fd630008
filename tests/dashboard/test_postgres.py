"""The dashboard's queries and leaderboard page on PostgreSQL.

The database comes from the ``postgres_url`` fixture (``tests/conftest.py``): the one
``ARCHBENCH_TEST_POSTGRES_URL`` names (e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``),
else a throwaway server the test session starts itself.  Everything is written to a
fresh schema that is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pytest


def test_the_database_is_a_live_postgresql_server(postgres_url):
    """The fixture hands out a server that answers, and one the tests may write to."""
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    try:
        assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        schema = f"archbench_probe_{uuid.uuid4().hex[:10]}"
        with engine.begin() as conn:
            assert conn.execute(text("select version()")).scalar().startswith("PostgreSQL ")
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            conn.execute(text(f'CREATE TABLE "{schema}".t (x integer primary key, s text)'))
            conn.execute(text(f'INSERT INTO "{schema}".t VALUES (1, \'one\'), (2, \'two\')'))
        with engine.connect() as conn:  # a new connection sees the committed rows
            assert conn.execute(text(f'SELECT sum(x), string_agg(s, \',\' ORDER BY x) FROM "{schema}".t')).one() \
                == (3, "one,two")
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        engine.dispose()
    if not os.environ.get("ARCHBENCH_TEST_POSTGRES_URL"):  # our own server: on loopback, in its own database
        assert postgres_url.startswith("postgresql+psycopg://archbench@127.0.0.1:")
        assert postgres_url.endswith("/archbench_test")


def test_a_throwaway_server_is_stopped_and_removed_also_after_an_error():
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tests.conftest import no_postgres
    from tests.pg import USER, NoPostgres, throwaway_server

    seen = {}
    try:
        with pytest.raises(ZeroDivisionError):
            with throwaway_server() as url:
                engine = create_engine(url)
                with engine.connect() as conn:
                    seen["data"] = Path(conn.execute(text("show data_directory")).scalar())
                    seen["socket"] = Path(conn.execute(text("show unix_socket_directories")).scalar())
                    assert conn.execute(text("show listen_addresses")).scalar() == "127.0.0.1"
                engine.dispose()
                seen["port"] = make_url(url).port
                assert (seen["data"] / "PG_VERSION").is_file() and seen["socket"] == seen["data"].parent
                1 / 0  # noqa: B018
    except NoPostgres as e:
        no_postgres(str(e))
    import psycopg  # after the server, which says how to install it when it is missing

    assert not seen["data"].parent.exists()  # the whole folder: data, socket, log
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=seen["port"], user=USER, dbname="postgres", connect_timeout=5)


def test_without_postgresql_binaries_ci_fails_and_elsewhere_skips(monkeypatch):
    from tests import pg
    from tests.conftest import no_postgres

    monkeypatch.setattr(pg, "find_bin_dir", lambda: None)
    with pytest.raises(pg.NoPostgres, match="apt-get install postgresql") as e:
        with pg.throwaway_server():
            pass
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the PostgreSQL tests"):
        no_postgres(str(e.value))
    for value in ("", "false", "0"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.skip.Exception, match="initdb"):
            no_postgres(str(e.value))


@pytest.fixture(scope="module")
def pg_url(postgres_url):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"archbench_dash_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module")
def seeded(pg_url):
    from harness.store.synthetic import seed_database

    seed_database(pg_url, archs=["transformer", "fox", "path"], lrs=[1e-3, 1e-2], seeds=2, curve_points=3,
                  tasks=["mqar", "needle", "modular_addition"])
    return pg_url


def test_queries_on_postgres(seeded):
    from sqlalchemy import update
    from sqlalchemy.exc import DBAPIError

    from harness import queries
    from harness.ranking import rank
    from harness.store import Run

    store = queries.open_store(seeded)
    try:
        assert store.engine.dialect.name == "postgresql"
        lb = queries.leaderboard(queries.score_frame(store))
        pd.testing.assert_frame_equal(lb.table, rank(store.score_frame()).table)
        assert len(queries.leaderboard(queries.score_frame(store), tasks=["needle"]).table) == 3
        finals = queries.probe_finals(store, "needle")
        assert finals["name"].str.startswith("accuracy/len=").any()
        assert len(queries.task_params(store, "mqar")) == 4
        ids = list(queries.probe_finals(store, "modular_addition")["run_id"].unique()[:2])
        assert set(queries.curve_frame(store, ids)["run_id"]) == set(ids)
        assert not queries.kernel_frame(store).empty
        runs = queries.runs_frame(store)
        detail = queries.run_detail(store, runs["id"].iloc[0])
        assert detail["run"]["id"] == runs["id"].iloc[0]
        with pytest.raises(DBAPIError, match="read-only"):
            with store.engine.begin() as conn:
                conn.execute(update(Run).values(status="failed"))
    finally:
        store.close()


def test_pages_on_postgres(seeded, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from harness.ranking import rank
    from harness.store import Store
    from tests.conftest import ROOT
    from tests.dashboard.test_dashboard_pages import board

    monkeypatch.setenv("ARCHBENCH_DB", seeded)
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    store = Store(seeded, readonly=True)
    expected = rank(store.score_frame()).table
    store.close()
    assert list(board(at)["arch"]) == list(expected["arch"])
    for page in ("views/probes.py", "views/kernels.py", "views/runs.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
    at.switch_page("views/probes.py").run()
    for task in ("needle", "modular_addition"):
        at.selectbox(key="probe_task").set_value(task).run()
        assert not at.exception, (task, [e.value for e in at.exception])
        assert len(at.get("vega_lite_chart")) >= 2, task


def test_benchmark_queries_on_postgres(seeded):
    """The benchmark board's queries (plain SQLAlchemy) read lm-eval scores, probe evaluations and
    the training run on PostgreSQL as on SQLite."""
    from harness import queries
    from harness.store import Store
    from tests.harness.test_benchmark_board import both, row, sha

    writer = Store(seeded)
    run_id = writer.runs(status="done", limit=1)[0].id
    writer.record_evaluation([dict(checkpoint_sha256=sha("a"), checkpoint_path="/checkpoints/a", run_id=run_id,
                                   task="needle", task_config={"train_len": 64}, split="test", name="accuracy",
                                   value=0.5, n_examples=8)])
    writer.record_benchmark_scores(both("a", 0.6, 0.8, run_id=run_id) + both("b", 0.5, 0.5, stderr=None)
                                   + [row("c", "hellaswag", 0.9, limit=0.5)])
    writer.close()
    store = queries.open_store(seeded)
    try:
        board = queries.benchmark_leaderboard(store)
        assert list(board.table["model"]) == ["a", "b"] and board.table["score_se"].isna().tolist() == [False, True]
        assert list(board.incomplete["model"]) == ["c"]
        scores = queries.model_scores(store, sha("a"))
        assert set(scores["source"]) == {"lm-eval", "archbench eval", "training run"}
        assert len(queries.benchmark_scores(store, sha("b"))) == 4
    finally:
        store.close()
