"""The dashboard's queries and leaderboard page on PostgreSQL.

Runs only when ``ARCHBENCH_TEST_POSTGRES_URL`` names a PostgreSQL database the test may
use (e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``); everything is written
to a fresh schema that is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid

import pandas as pd
import pytest

PG_URL = os.environ.get("ARCHBENCH_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="set ARCHBENCH_TEST_POSTGRES_URL to a PostgreSQL database to run")


@pytest.fixture(scope="module")
def pg_url():
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"archbench_dash_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module")
def seeded(pg_url):
    from tests.dashboard.seed import seed_database

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
