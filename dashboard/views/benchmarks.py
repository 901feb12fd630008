"""Benchmarks: models ranked on their lm-eval scores exactly as ``archbench leaderboard --benchmarks``
ranks them, and one model's probe and benchmark scores side by side."""

from __future__ import annotations

import streamlit as st

from dashboard import common
from harness.queries import benchmark_board_columns, short_id, shown_table

url = common.db_url()
st.title("Benchmarks")
st.caption("lm-eval scores stored by `archbench eval CHECKPOINT --lm-tasks ...`. A model is its weights (or its hub "
           "id); its latest score per benchmark, metric, filter, few-shot count and document limit counts. Each "
           "benchmark has one headline metric for every model (acc_norm, else acc, else exact_match, else its first "
           "higher-is-better metric); perplexity-only benchmarks are shown, not averaged. Models are ranked only "
           "on the benchmark set (few-shot count and limit included) shared by the most models (most model x "
           "benchmark pairs compared), by their mean headline "
           "score ± its standard error, sqrt(sum se²)/k; an unknown stderr stays unknown (-). Same numbers as "
           "`archbench leaderboard --benchmarks`.")

board = common.benchmark_board(url)
if board.empty:
    st.info("No lm-eval scores yet.")
    st.markdown("Score a checkpoint (or `hf:MODEL`) on lm-eval tasks or on archbench's probes exported as lm-eval "
                "tasks, then reload:")
    st.code("archbench eval CHECKPOINT --lm-tasks hellaswag,arc_easy,archbench_needle", language="bash")
    st.stop()

# -- the ranked table ------------------------------------------------------------------------
table = board.table
ranked = table[table["rank"].notna()]
c1, c2, c3 = st.columns(3)
c1.metric("Top model", ranked["model"].iloc[0] if len(ranked) else "-")
c2.metric("Models ranked", len(ranked))
c3.metric("Benchmarks averaged", int(ranked["benchmarks"].iloc[0]) if len(ranked) else 0)

# the columns, headers and help are the CLI's (harness.benchmark_board.BENCHMARK_BOARD_COLUMNS, one per cell after)
columns = benchmark_board_columns(board)
column_config = {c.header: st.column_config.Column(c.header, help=c.help or None) for c in columns}
column_config["rank"] = st.column_config.NumberColumn("rank", width="small", help="equal scores share a rank")
st.dataframe(shown_table(board), hide_index=True, width="stretch", column_config=column_config)
for note in board.notes:
    st.caption(note)
if not board.incomplete.empty:
    st.subheader("Incomplete (not ranked)")
    st.caption("These models lack some of the benchmarks the ranked models share.")
    st.dataframe(board.incomplete, hide_index=True, width="stretch")
st.download_button("Download CSV", table.to_csv(index=False).encode(), file_name="archbench-benchmarks.csv",
                   mime="text/csv", key="bm_csv")

# -- one model -------------------------------------------------------------------------------
st.subheader("One model: probe and benchmark scores")
models = common.benchmark_models(url)
keys = list(models["model_key"])
names = {k: f"{label} ({short_id(k)})" for k, label in zip(models["model_key"], models["label"])}
top = ranked["model_key"].iloc[0] if len(ranked) else keys[0]
key = st.selectbox("Model", keys, index=keys.index(top) if top in keys else 0, format_func=names.get, key="bm_model")
info = models.set_index("model_key").loc[key]
st.caption(f"`{info['model']}` ({info['model_kind']})"
           + (f", trained by run `{info['run_id']}`" if isinstance(info["run_id"], str) else ""))
scores = common.model_scores(url, key)
number = {c: st.column_config.NumberColumn(c, format="%.4f") for c in ("value", "stderr")}
for kind, title, empty in (
        ("probe", "Probe scores", "No probe scores for this model: `archbench eval CHECKPOINT` scores an archbench "
                                  "checkpoint on its probe's splits; `--lm-tasks archbench_needle,...` on the probes "
                                  "exported as lm-eval tasks."),
        ("benchmark", "Benchmark scores", "No lm-eval benchmark scores for this model beyond its probes.")):
    st.markdown(f"**{title}**")
    part = scores[scores["kind"] == kind].drop(columns="kind")
    part = part.loc[:, part.notna().any() | (part.columns == "value")]  # e.g. no split for lm-eval scores
    if part.empty:
        st.info(empty)
    else:
        st.dataframe(part, hide_index=True, width="stretch", column_config=number)
