"""Leaderboard: architectures ranked exactly as ``archbench leaderboard`` ranks them."""

from __future__ import annotations

import streamlit as st

from dashboard import common
from harness.queries import NO_SWEEP

url = common.db_url()
st.title("Leaderboard")
st.caption("Per (architecture, size, task setting): the learning rate with the best mean **val** score; its "
           "**test** scores normalised against chance, `max(0, (score - chance) / (1 - chance))`; the mean over "
           "task settings. 95% CI: bootstrap over seeds. Win rate: share of same-setting comparisons won. "
           "Same numbers as `archbench leaderboard`.")

scores = common.score_frame(url)
if scores.empty:
    counts = common.status_counts(url)
    if counts:
        st.info("No finished runs yet (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "). "
                "The leaderboard counts runs whose status is `done`.")
    else:
        st.info("This database holds no runs yet.")
    common.no_results_help(url)
    st.stop()

# -- filters ---------------------------------------------------------------------------------
side = st.sidebar
side.header("Filters")
d_models = sorted(int(v) for v in scores["d_model"].dropna().unique())
layers = sorted(int(v) for v in scores["n_layers"].dropna().unique())
sweeps = sorted(scores["sweep"].fillna(NO_SWEEP).unique())
tasks = sorted(scores["task"].unique())
f_d = side.multiselect("d_model", d_models, key="lb_d_model", placeholder="all")
f_l = side.multiselect("n_layers", layers, key="lb_n_layers", placeholder="all")
f_sweep = side.multiselect("Suite / sweep", sweeps, key="lb_sweep", placeholder="all")
f_task = side.multiselect("Probes", tasks, key="lb_task", placeholder="all")
setting_pool = scores[scores["task"].isin(f_task)] if f_task else scores
f_setting = side.multiselect("Task settings", sorted(setting_pool["task_setting"].unique()), key="lb_setting",
                             placeholder="all")
max_seeds = int(scores.groupby(["arch_label", "size", "task_setting", "lr"])["seed"].nunique().max())
f_seeds = side.number_input("Minimum seeds", min_value=1, max_value=max(1, max_seeds), value=1, step=1,
                            key="lb_min_seeds", help="count a (setting, learning rate) only with this many seeds")

table, settings = common.leaderboard(url, tuple(f_sweep), tuple(f_task), tuple(f_setting), tuple(f_d), tuple(f_l),
                                     int(f_seeds))
if table.empty:
    st.warning("No finished runs match these filters.")
    st.stop()

# -- the table -------------------------------------------------------------------------------
summary = ["rank", "arch", "size", "score", "ci_low", "ci_high", "win_rate", "n_params", "runs", "settings"]
probes = [c for c in table.columns if c not in summary]
shown = table[["rank", "arch", "size", "score", "ci_low", "ci_high", "win_rate", *probes, "n_params", "runs",
               "settings"]]
top = shown.iloc[0]
c1, c2, c3 = st.columns(3)
c1.metric("Top architecture", f"{top['arch']}", f"{top['size']}", delta_color="off", delta_arrow="off")
c2.metric("Architectures ranked", len(shown))
c3.metric("Runs counted", int(shown["runs"].sum()))

fmt = {c: "{:.3f}" for c in ["score", "ci_low", "ci_high", "win_rate", *probes]}
fmt["n_params"] = "{:,.0f}"
styler = common.highlight_best(shown, ["score", "ci_low", "ci_high", "win_rate", *probes], fmt)
st.dataframe(
    styler, hide_index=True, width="stretch", height="content" if len(shown) <= 50 else 900,
    column_config={
        "rank": st.column_config.NumberColumn("rank", width="small"),
        "arch": st.column_config.TextColumn("arch", width=140),
        "score": st.column_config.NumberColumn("score", help="mean normalised test score over task settings"),
        "ci_low": st.column_config.NumberColumn("95% CI low"),
        "ci_high": st.column_config.NumberColumn("95% CI high"),
        "win_rate": st.column_config.NumberColumn("win rate"),
        "n_params": st.column_config.NumberColumn("params"),
        "settings": st.column_config.NumberColumn("settings", help="task settings scored"),
        **{p: st.column_config.NumberColumn(p, help=f"mean normalised test score over {p} settings") for p in probes},
    },
)
st.caption("Highlighted: the best value in each column. Probe columns: the mean normalised score over that "
           "probe's settings.")
st.download_button("Download CSV", table.to_csv(index=False).encode(), file_name="archbench-leaderboard.csv",
                   mime="text/csv", key="lb_csv")

with st.expander("Per task setting: chosen learning rate and scores"):
    st.dataframe(settings.rename(columns={"arch_label": "arch"}), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                for c in ("val_mean", "test_mean", "norm_mean", "chance")})
