"""The archbench dashboard: ``archbench dashboard [--db URL] [--port N]``.

Equivalently ``streamlit run dashboard/app.py -- --db URL``.  Five pages (leaderboard,
benchmarks, probes, kernels, runs), all read-only over the results store.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the checkout
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402

from dashboard import common  # noqa: E402

st.set_page_config(page_title="archbench", page_icon=":material/leaderboard:", layout="wide")

url = common.db_url()
if common.open_or_explain(url):
    here = Path(__file__).parent
    page = st.navigation([
        st.Page(here / "views" / "leaderboard.py", title="Leaderboard", icon=":material/leaderboard:", default=True),
        st.Page(here / "views" / "benchmarks.py", title="Benchmarks", icon=":material/fact_check:"),
        st.Page(here / "views" / "probes.py", title="Probes", icon=":material/science:"),
        st.Page(here / "views" / "kernels.py", title="Kernels", icon=":material/speed:"),
        st.Page(here / "views" / "runs.py", title="Runs", icon=":material/table_rows:"),
    ])
    common.sidebar_db(url)
    try:
        page.run()
    except SQLAlchemyError as e:  # e.g. the database went away under a running dashboard
        st.error(f"cannot read {url}: {e.__class__.__name__}: {getattr(e, 'orig', None) or e}")
