"""Runs: a searchable table, one run's details, and two runs' configs side by side."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboard import common
from harness.queries import config_diff, search_runs

url = common.db_url()
st.title("Runs")

runs = common.runs_frame(url)
if runs.empty:
    st.info("This database holds no runs yet.")
    common.no_results_help(url)
    st.stop()

text = st.text_input("Search", key="runs_search", placeholder="words from the arch, size, task, status, sweep or id "
                     "(all must match), e.g. `fox needle done`")
shown = search_runs(runs, text)
st.caption(f"{len(shown)} of {len(runs)} runs, newest first")
st.dataframe(shown, hide_index=True, width="stretch", height=320,
             column_config={"val_score": st.column_config.NumberColumn("val", format="%.4f"),
                            "test_score": st.column_config.NumberColumn("test", format="%.4f"),
                            "lr": st.column_config.NumberColumn("lr", format="%g"),
                            "duration_s": st.column_config.NumberColumn("seconds", format="%.1f"),
                            "created_at": st.column_config.DatetimeColumn("created")})
if shown.empty:
    st.stop()

MAX_CHOICES = 1000
choices = shown.head(MAX_CHOICES)
label = {r.id: f"{r.id} · {r.arch_label} {r.size} · {r.task_setting} · lr={r.lr:g} seed={r.seed} · {r.status}"
         for r in choices.itertuples()}
if len(shown) > MAX_CHOICES:
    st.caption(f"The pickers below list the newest {MAX_CHOICES} matches; narrow the search to reach others.")

# -- one run -------------------------------------------------------------------------------
st.subheader("Run details")
run_id = st.selectbox("Run", list(label), format_func=label.get, key="runs_pick")
detail = common.run_detail(url, run_id)
if detail is None:
    st.warning(f"Run {run_id} is no longer in the database.")
    st.stop()
run = detail["run"]
cols = st.columns(5)
cols[0].metric("status", run["status"])
cols[1].metric("val", "–" if run["val_score"] is None else f"{run['val_score']:.4f}")
cols[2].metric("test", "–" if run["test_score"] is None else f"{run['test_score']:.4f}")
cols[3].metric("steps", "–" if run["step"] is None else run["step"])
cols[4].metric("seconds", "–" if run["duration_s"] is None else f"{run['duration_s']:.1f}")
if run["error"]:
    st.code(run["error"], language="text")

curves, finals, config, env, ckpt = st.tabs(["Curves", "Final metrics", "Config", "Environment", "Checkpoint"])
metrics = detail["metrics"]
with curves:
    curve = metrics[~metrics["final"]].copy()
    if curve.empty:
        st.info("No learning-curve points stored for this run.")
    else:
        curve["series"] = curve["split"] + " " + curve["name"]
        for kind, sel in (("loss", curve["name"].str.contains("loss")), ("score", ~curve["name"].str.contains("loss"))):
            part = curve[sel]
            if part.empty:
                continue
            st.altair_chart(alt.Chart(part).mark_line(point=True).encode(
                x=alt.X("step:Q"), y=alt.Y("value:Q", title=kind), color=alt.Color("series:N", title="split, metric"),
                tooltip=["step", "split", "name", alt.Tooltip("value:Q", format=".4f")]).properties(height=280),
                width="stretch")
with finals:
    fin = metrics[metrics["final"]][["split", "name", "value"]]
    if fin.empty:
        st.info("No final metrics stored.")
    else:
        st.dataframe(fin, hide_index=True, width="stretch")
with config:
    st.json(run["config"], expanded=True)
with env:
    st.json(detail["environment"] or {"environment": "not recorded"}, expanded=True)
with ckpt:
    if detail["checkpoints"]:
        for c in detail["checkpoints"]:
            st.code(c["path"], language="text")
            st.caption(f"step {c['step']}, sha256 {c['sha256']}")
        st.caption("Re-score it with `archbench eval PATH`.")
    else:
        st.info("No checkpoint stored for this run.")

# -- two runs side by side -----------------------------------------------------------------
st.subheader("Compare two runs' configs")
ids = list(label)
a_col, b_col = st.columns(2)
a = a_col.selectbox("Run A", ids, index=0, format_func=label.get, key="runs_a")
b = b_col.selectbox("Run B", ids, index=min(1, len(ids) - 1), format_func=label.get, key="runs_b")
da, db = common.run_detail(url, a), common.run_detail(url, b)
if da is not None and db is not None:
    diff = config_diff(da["run"]["config"], db["run"]["config"])
    only = st.checkbox("only differing keys", value=False, key="runs_only_diff")
    if only:
        diff = diff[diff["differs"]]
    n = int(diff["differs"].sum())
    st.caption(f"{n} differing key{'s' if n != 1 else ''} highlighted" if n else "The configs are identical.")
    styler = diff.rename(columns={"a": f"A {a}", "b": f"B {b}"}).style.apply(
        lambda row: [common.DIFF if row["differs"] else "" for _ in row], axis=1)
    st.dataframe(styler, hide_index=True, width="stretch", column_config={"differs": None},
                 height=min(36 * (len(diff) + 1) + 4, 600))
