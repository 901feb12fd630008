"""What every dashboard page shares: the database URL, the read-only store, cached queries,
guidance for an empty, missing or outdated database, and table styling.

Pages read the store only through :mod:`harness.queries`; every query result is cached for
:data:`TTL` seconds (``st.cache_data``), so a page rerun (a filter changed) does not go back
to the database, and new runs appear within seconds.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pandas as pd
import streamlit as st

from harness import queries
from harness.errors import NewerSchema, OlderSchema, StoreNotReady, UserError
from harness.store import resolve_url

TTL = 10  # seconds a query result is reused

QUICK = "archbench suite quick"

# a highlight that reads on light and dark backgrounds alike: translucent, plus bold
HIGHLIGHT = "background-color: rgba(60, 170, 90, 0.28); font-weight: 700"
DIFF = "background-color: rgba(230, 160, 30, 0.30); font-weight: 700"


def db_url() -> str:
    """``--db`` after ``--`` on the ``streamlit run`` line, else ``$ARCHBENCH_DB``, else the default."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--db")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return resolve_url(args.db)


@st.cache_resource(show_spinner=False)
def _store(url: str):  # noqa: ANN202
    return queries.open_store(url)  # a UserError is raised, not cached: the next rerun tries again


def store(url: str):  # noqa: ANN201
    return _store(url)


def open_or_explain(url: str) -> bool:
    """Open the store; on failure show what to do (not a traceback) and return False."""
    try:
        _store(url)
        return True
    except UserError as e:
        explain(url, e)
        return False


def explain(url: str, error: UserError) -> None:
    st.title("archbench")
    message = str(error)
    if isinstance(error, OlderSchema):
        st.warning(f"This results database was written by an older archbench. {message}")
        st.markdown("Migrate it (the runs are kept), then reload this page:")
        st.code(f"archbench db upgrade --db {url}", language="bash")
    elif isinstance(error, NewerSchema):
        st.error(message)
        st.code("pip install -U archbench", language="bash")
    elif isinstance(error, StoreNotReady):
        st.info(f"No results yet. {message}")
        no_results_help(url)
    else:
        st.error(message)


def no_results_help(url: str) -> None:
    st.markdown("Train the built-in quick suite (a few minutes on a laptop CPU), then reload:")
    st.code(QUICK if url == resolve_url(None) else f"{QUICK} --db {url}", language="bash")


# -- cached queries ----------------------------------------------------------------------

@st.cache_data(ttl=TTL, show_spinner=False)
def score_frame(url: str) -> pd.DataFrame:
    return queries.score_frame(store(url))


@st.cache_data(ttl=TTL, show_spinner=False)
def status_counts(url: str) -> dict[str, int]:
    return queries.status_counts(store(url))


@st.cache_data(ttl=TTL, show_spinner=False)
def leaderboard(url: str, sweeps: tuple = (), tasks: tuple = (), settings: tuple = (), d_model: tuple = (),
                n_layers: tuple = (), min_seeds: int = 1, exclude_failed: bool = False) -> queries.Leaderboard:
    return queries.leaderboard(score_frame(url), sweeps=sweeps, tasks=tasks, settings=settings, d_model=d_model,
                               n_layers=n_layers, min_seeds=min_seeds, exclude_failed=exclude_failed)


@st.cache_data(ttl=TTL, show_spinner=False)
def task_run_counts(url: str) -> dict[str, int]:
    return queries.task_run_counts(store(url))


@st.cache_data(ttl=TTL, show_spinner=False)
def probe_finals(url: str, task: str) -> pd.DataFrame:
    return queries.probe_finals(store(url), task)


@st.cache_data(ttl=TTL, show_spinner=False)
def task_params(url: str, task: str) -> pd.DataFrame:
    return queries.task_params(store(url), task)


@st.cache_data(ttl=TTL, show_spinner=False)
def curves(url: str, run_ids: tuple[str, ...], names: tuple[str, ...] | None = None) -> pd.DataFrame:
    return queries.curve_frame(store(url), run_ids, names=names)


@st.cache_data(ttl=TTL, show_spinner=False)
def kernel_frame(url: str) -> pd.DataFrame:
    return queries.kernel_frame(store(url))


@st.cache_data(ttl=TTL, show_spinner=False)
def runs_frame(url: str) -> pd.DataFrame:
    return queries.runs_frame(store(url))


@st.cache_data(ttl=TTL, show_spinner=False)
def run_detail(url: str, run_id: str) -> dict[str, Any] | None:
    return queries.run_detail(store(url), run_id)


@st.cache_data(ttl=TTL, show_spinner=False)
def benchmark_board(url: str) -> queries.BenchmarkBoard:
    return queries.benchmark_leaderboard(store(url))


@st.cache_data(ttl=TTL, show_spinner=False)
def benchmark_models(url: str) -> pd.DataFrame:
    return queries.benchmark_models(store(url))


@st.cache_data(ttl=TTL, show_spinner=False)
def model_scores(url: str, model: str) -> pd.DataFrame:
    return queries.model_scores(store(url), model)


# -- presentation --------------------------------------------------------------------------

def highlight_best(df: pd.DataFrame, columns: list[str], fmt: dict[str, str]):  # noqa: ANN201
    """A Styler marking each column's best (highest) value; NaN never wins."""
    styler = df.style.format(fmt, na_rep="–")
    cols = [c for c in columns if c in df and df[c].notna().any()]
    if cols:
        styler = styler.highlight_max(subset=cols, props=HIGHLIGHT)
    return styler


def mean_band(df: pd.DataFrame, by: list[str], value: str = "value") -> pd.DataFrame:
    """Mean, min and max of ``value`` over the rows (seeds) of each group."""
    g = df.groupby(by, dropna=False)[value]
    out = g.agg(["mean", "min", "max", "count"]).reset_index()
    return out.rename(columns={"count": "seeds"})


def sidebar_db(url: str) -> None:
    st.sidebar.caption(f"reading `{url}` (read-only); results refresh every {TTL} s")
