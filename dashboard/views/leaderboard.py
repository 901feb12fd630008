"""Leaderboard: architectures ranked exactly as ``archbench leaderboard`` ranks them."""

from __future__ import annotations

import streamlit as st

from dashboard import common
from harness.queries import NO_SWEEP, board_columns, latest_sweep

url = common.db_url()
st.title("Leaderboard")
st.caption("An entry is one config but for seed, learning rate and task. Per task setting: the learning rate "
           "with the best mean **val** score; its **test** scores normalised against the task's no-skill floor "
           "(the best of chance and trivial strategies), `(score - floor) / (1 - floor)`, averaged over seeds, "
           "then clipped at 0. Failed and diverged runs score 0. Only entries with the same task settings are "
           "ranked. 95% CI: bootstrap over seeds with 5+ seeds per setting, else a t-interval; none with one "
           "seed. Same numbers as `archbench leaderboard`.")

scores = common.score_frame(url)
if scores.empty:
    counts = common.status_counts(url)
    if counts:
        st.info("No finished runs yet (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "). "
                "The leaderboard counts runs that are done, failed or diverged.")
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
latest = latest_sweep(scores)
f_sweep = side.multiselect("Suite / sweep", sweeps, default=[latest] if latest else [], key="lb_sweep",
                           placeholder="all", help="the latest sweep by default; clear it to rank every run")
f_task = side.multiselect("Probes", tasks, key="lb_task", placeholder="all")
setting_pool = scores[scores["task"].isin(f_task)] if f_task else scores
f_setting = side.multiselect("Task settings", sorted(setting_pool["task_setting"].unique()), key="lb_setting",
                             placeholder="all")
max_seeds = int(scores.groupby(["setting_id", "lr"])["seed"].nunique().max())
f_seeds = side.number_input("Minimum seeds", min_value=1, max_value=max(1, max_seeds), value=1, step=1,
                            key="lb_min_seeds", help="count a (setting, learning rate) only with this many seeds")
f_excl = side.checkbox("Exclude failed runs", key="lb_exclude_failed",
                       help="by default a failed or diverged run scores 0 for its seed")

lb = common.leaderboard(url, tuple(f_sweep), tuple(f_task), tuple(f_setting), tuple(f_d), tuple(f_l), int(f_seeds),
                        bool(f_excl))
table, settings = lb.table, lb.settings
for note in lb.notes:
    st.warning(note)
if table.empty:
    st.warning("No finished runs match these filters.")
    st.stop()

# -- the table -------------------------------------------------------------------------------
# the columns, headers, formats and help are the CLI's (harness.ranking.BOARD_COLUMNS); an interval's ends
# are shown as two columns here
columns = board_columns(table)
fields = [(f, c) for c in columns for f in c.fields]
shown = table[[f for f, _ in fields]]
top = shown.iloc[0]
c1, c2, c3 = st.columns(3)
c1.metric("Top architecture", f"{top['arch']}", f"{top['size']}", delta_color="off", delta_arrow="off")
c2.metric("Architectures ranked", len(shown))
c3.metric("Runs counted", int(shown["runs"].sum()))

fmt = {f: c.fmt for f, c in fields if c.fmt is not None}
styler = common.highlight_best(shown, [f for f, c in fields if c.best], fmt)
styler = styler.apply(lambda r: ["background-color: #fde2e2" if r["failed"] > 0 else ""] * len(r), axis=1)
column_config = {f: st.column_config.NumberColumn(c.headers[f], help=c.help or None)
                 for f, c in fields if f not in ("arch", "size")}
column_config["rank"] = st.column_config.NumberColumn("rank", width="small")
column_config["arch"] = st.column_config.TextColumn("arch", width=140)
st.dataframe(styler, hide_index=True, width="stretch", height="content" if len(shown) <= 50 else 900,
             column_config=column_config)
spreads = lb.spreads()
dead = [c for c, v in spreads.items() if v < 0.05]
st.caption("Highlighted: the best value in each column; red rows had failed or diverged runs. Probe columns: the "
           "mean normalised score over that probe's settings. Column spread (max - min): "
           + ", ".join(f"{c} {v:.2f}" for c, v in spreads.items())
           + (f". Separates nothing (< 0.05): {', '.join(dead)}." if dead else "."))
if not lb.incomplete.empty:
    st.subheader("Incomplete (not ranked)")
    st.caption("These entries lack some of the task settings the ranked entries share.")
    st.dataframe(lb.incomplete, hide_index=True, width="stretch")
st.download_button("Download CSV", table.to_csv(index=False).encode(), file_name="archbench-leaderboard.csv",
                   mime="text/csv", key="lb_csv")

with st.expander("Per task setting: chosen learning rate and scores"):
    st.dataframe(settings.drop(columns=["entry_id", "setting_id", "task_id"]), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                for c in ("val_norm", "test_mean", "norm_mean", "score", "floor", "chance")})
