"""Probes: each probe's own plot, from the final metrics (and curves) its task stores.

Every plot uses the runs at the learning rate the leaderboard chose for their
(architecture, size, task setting); lines are means over seeds, bands span min to max.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import common
from harness.queries import probe_names, varying_knobs

url = common.db_url()
st.title("Probes")

counts = common.task_run_counts(url)
registered = probe_names()
options = registered + sorted(t for t in counts if t not in registered)  # runs of unregistered tasks
task = st.selectbox("Probe", options, key="probe_task",
                    format_func=lambda t: f"{t} ({counts.get(t, 0)} finished runs)")

DIFFICULTY = {"mqar": "num_pairs", "flipflop": "seq_len", "needle": "train_len", "multiplication": "n_digits",
              "modular_addition": "p", "state_tracking": "seq_len", "induction": "seq_len"}
BAND = "Line: mean over seeds at the learning rate the leaderboard chose; band: min to max over seeds."

finals = common.probe_finals(url, task)
if finals.empty:
    st.info(f"No finished `{task}` runs yet. Train some with `archbench suite quick` (every probe) or "
            f"`archbench train --task {task} --preset quick`.")
    st.stop()

sizes = finals["size"].value_counts()
if len(sizes) > 1:
    size = st.selectbox("Size", list(sizes.index), key="probe_size", help="model size (d_model-layers-heads)")
    finals = finals[finals["size"] == size]
params = common.task_params(url, task)
params = params[params["task_setting"].isin(finals["task_setting"].unique())].reset_index(drop=True)


def chart(df: pd.DataFrame, layers: list, facet: str | None = None, columns: int = 3,
          independent_x: bool = False, panel: tuple[int, int] = (260, 200)) -> None:
    """Layers over one frame, one panel per value of ``facet`` when it takes more than one."""
    ch = alt.layer(*layers, data=df)
    if facet and df[facet].nunique() > 1:
        ch = ch.properties(width=panel[0], height=panel[1]).facet(facet=alt.Facet(f"{facet}:N", title=None),
                                                                  columns=columns)
        if independent_x:
            ch = ch.resolve_scale(x="independent")
    st.altair_chart(ch)


def pick_setting(df: pd.DataFrame, key: str) -> pd.DataFrame:
    settings = sorted(df["task_setting"].unique())
    if len(settings) > 1:
        chosen = st.selectbox("Task setting", settings, key=key)
        df = df[df["task_setting"] == chosen]
    return df


def facet_knobs(params: pd.DataFrame, knob: str) -> list[str]:
    """The other task parameters to draw one panel per value of: those that vary
    independently of ``knob`` (and of each other), numbers or not (state tracking's
    ``group``); one that follows from them, such as MQAR's ``ood_num_pairs`` (twice
    ``num_pairs``), would only split every curve into single points."""
    varying = [c for c in params.columns
               if c not in ("task_setting", knob) and params[c].map(repr).nunique() > 1]
    keep: list[str] = []
    for k in sorted(varying, key=lambda k: k.startswith("ood_")):
        if params.groupby([knob, *keep], dropna=False)[k].nunique(dropna=False).max() > 1:
            keep.append(k)
    return keep


def band_lines(x: alt.X, y_title: str, dash: tuple[str, list[str]] | None = None) -> list:
    """Mean lines coloured by architecture over min-max bands; ``dash=(field, values)`` draws
    the first value solid and the next ones dashed (said in the caption: a dash legend's
    symbols are black, invisible on the dark theme)."""
    base = alt.Chart().encode(x=x)
    # the band is filled by architecture (a copy of the field, so that its legend, switched off,
    # is not merged with the lines' one; same values, same colours)
    area = base.transform_calculate(band="datum.arch_label").mark_area(opacity=0.15).encode(
        y=alt.Y("min:Q", title=y_title), y2="max:Q", fill=alt.Fill("band:N", legend=None))
    enc = dict(y=alt.Y("mean:Q", title=y_title), color=alt.Color("arch_label:N", title="arch"),
               tooltip=["arch_label", alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("min:Q", format=".3f"),
                        alt.Tooltip("max:Q", format=".3f"), "seeds"])
    if dash:
        field, values = dash
        area = area.encode(detail=f"{field}:N")
        enc["strokeDash"] = alt.StrokeDash(f"{field}:N", legend=None, scale=alt.Scale(
            domain=values, range=[[1, 0], [6, 3], [2, 2], [8, 2, 2, 2]][:len(values)]))
    return [area, base.mark_line(point=True).encode(**enc)]


def parsed(df: pd.DataFrame, pattern: str, names: list[str], types: list[type]) -> pd.DataFrame:
    """Rows whose metric name matches ``pattern``, its groups as columns ``names``."""
    m = df["name"].str.extract(pattern)
    keep = m.notna().all(axis=1)
    out = df[keep].copy()
    for i, (n, t) in enumerate(zip(names, types)):
        out[n] = m.loc[keep, i].astype(t)
    return out


# -- score vs the difficulty knob (every probe) -------------------------------------------
st.subheader("Score vs difficulty")
plain = finals[~finals["name"].str.contains("/") & (finals["split"] != "curve")]
pairs = sorted(set(zip(plain["split"], plain["name"])))
headline = "exact_match" if (plain["name"] == "exact_match").any() else "accuracy"
test_split = next((s for s in ("in_dist", "test") if (s, headline) in pairs), pairs[0][0] if pairs else "test")
default = pairs.index((test_split, headline)) if (test_split, headline) in pairs else 0
c1, c2 = st.columns(2)
split, name = c1.selectbox("Metric", pairs, index=default, key=f"probe_metric_{task}",
                           format_func=lambda p: f"{p[1]} on {p[0]}")
knobs = varying_knobs(params)
if knobs:
    pref = DIFFICULTY.get(task)
    knob = c2.selectbox("Difficulty knob", knobs, index=knobs.index(pref) if pref in knobs else 0,
                        key=f"probe_knob_{task}")
    d = plain[(plain["split"] == split) & (plain["name"] == name)].merge(params, on="task_setting")
    others = facet_knobs(params, knob)
    d["rest"] = d[others].astype(str).agg(lambda r: ", ".join(f"{k}={v}" for k, v in zip(others, r)), axis=1) \
        if others else ""
    band = common.mean_band(d, ["arch_label", "rest", knob])
    chart(band, band_lines(alt.X(f"{knob}:Q", scale=alt.Scale(zero=False), title=knob), f"{name} ({split})"),
          facet="rest")
else:
    d = plain[(plain["split"] == split) & (plain["name"] == name)]
    band = common.mean_band(d, ["arch_label"])
    base = alt.Chart().encode(x=alt.X("arch_label:N", sort="-y", title="arch"))
    chart(band, [base.mark_bar(opacity=0.8).encode(y=alt.Y("mean:Q", title=f"{name} ({split})"),
                                                   color=alt.Color("arch_label:N", legend=None),
                                                   tooltip=["arch_label", alt.Tooltip("mean:Q", format=".3f"),
                                                            "seeds"]),
                 base.mark_errorbar().encode(y=alt.Y("min:Q", title=f"{name} ({split})"), y2="max:Q")])
    st.caption("One task setting only: sweep a knob (e.g. `num_pairs`, `seq_len`) to see a curve.")
st.caption(BAND)


# -- the probe's own plot ------------------------------------------------------------------
if task == "needle":
    st.subheader("Needle: accuracy by context length and depth")
    grid = pick_setting(finals[finals["split"] == "grid"], "needle_setting")
    cells = parsed(grid, r"^accuracy/len=(\d+)/depth=([\d.]+)$", ["length", "depth"], [int, float])
    if cells.empty:
        st.info("These needle runs stored no per-cell accuracies (split `grid`).")
    else:
        heat = common.mean_band(cells, ["arch_label", "length", "depth"])
        rect = alt.Chart().mark_rect().encode(
            x=alt.X("length:O", title="context length"), y=alt.Y("depth:O", title="needle depth", sort="descending"),
            color=alt.Color("mean:Q", title="accuracy", scale=alt.Scale(scheme="viridis", domain=[0, 1])),
            tooltip=["arch_label", "length", "depth", alt.Tooltip("mean:Q", format=".3f"), "seeds"],
        )
        chart(heat, [rect], facet="arch_label", columns=4, panel=(200, 160))
        st.caption("Mean accuracy over seeds per cell; lengths beyond the training length test extrapolation.")

elif task == "flipflop":
    st.subheader("Flip-flop: errors in distribution, sparse and dense")
    ff = pick_setting(finals[finals["name"] == "glitch_rate"], "ff_setting")
    ff = ff[ff["split"].isin(["in_dist", "sparse", "dense"])]
    band = common.mean_band(ff, ["arch_label", "split"])
    base = alt.Chart().encode(x=alt.X("arch_label:N", title="arch"),
                              xOffset=alt.XOffset("split:N", sort=["in_dist", "sparse", "dense"]))
    chart(band, [base.mark_bar().encode(y=alt.Y("mean:Q", title="glitch rate (1 - accuracy)"),
                                        color=alt.Color("split:N", sort=["in_dist", "sparse", "dense"]),
                                        tooltip=["arch_label", "split", alt.Tooltip("mean:Q", format=".4f"),
                                                 "seeds"]),
                 base.mark_errorbar().encode(y=alt.Y("min:Q", title="glitch rate (1 - accuracy)"), y2="max:Q")])
    st.caption("in_dist: FFL(0.8) as trained; sparse: FFL(0.98); dense: FFL(0.1). Lower is better.")

elif task == "modular_addition":
    st.subheader("Grokking: train and test accuracy over steps")
    runs = pick_setting(finals, "grok_setting")
    ids = tuple(sorted(runs["run_id"].unique()))
    curve = common.curves(url, ids, ("accuracy",))
    if curve.empty:
        st.info("These runs stored no learning curves.")
    else:
        arch_of = runs.drop_duplicates("run_id").set_index("run_id")["arch_label"]
        curve["arch_label"] = curve["run_id"].map(arch_of)
        archs = sorted(curve["arch_label"].unique())
        pick = st.multiselect("Architectures", archs, default=archs[:4], key="grok_archs")
        curve = curve[curve["arch_label"].isin(pick) & curve["split"].isin(["train", "test"])]
        lines = common.mean_band(curve, ["arch_label", "split", "step"])
        log = st.checkbox("log-scale steps", value=False, key="grok_log")
        x = alt.X("step:Q", title="step", scale=alt.Scale(type="log") if log else alt.Scale())
        layers = band_lines(x, "accuracy", dash=("split", ["train", "test"]))
        grok = runs[(runs["split"] == "curve") & (runs["name"] == "steps_to_grok") & runs["arch_label"].isin(pick)]
        grok = grok.dropna(subset=["value"]).groupby("arch_label")["value"].mean().rename("steps_to_grok").reset_index()
        ch = alt.layer(*layers, data=lines)
        if not grok.empty:
            ch = ch + alt.Chart(grok).mark_rule(strokeDash=[6, 3]).encode(
                x="steps_to_grok:Q", color="arch_label:N", tooltip=["arch_label", "steps_to_grok"])
        st.altair_chart(ch)
        st.caption("Solid: train accuracy; dashed: test accuracy; vertical rules: mean `steps_to_grok` (first "
                   "step with test accuracy >= 0.99) over the seeds that grokked.")
    stats = runs[runs["split"] == "curve"].pivot_table(index="arch_label", columns="name", values="value",
                                                       aggfunc="mean")
    if not stats.empty:
        st.dataframe(stats, width="stretch")

elif task == "multiplication":
    st.subheader("Multiplication: accuracy per digit position")
    test = finals[finals["split"] == "test"]
    pos = parsed(test, r"^digit_accuracy/pos=(\d+)$", ["position"], [int])
    band = common.mean_band(pos, ["arch_label", "task_setting", "position"])
    chart(band, band_lines(alt.X("position:O", title="product digit (least significant first)"), "digit accuracy"),
          facet="task_setting", independent_x=True)
    st.caption(BAND)

elif task == "state_tracking":
    st.subheader("State tracking: accuracy vs sequence length")
    per = parsed(finals[finals["split"].isin(["test", "ood_len"])], r"^accuracy/len=(\d+)$", ["length"], [int])
    band = common.mean_band(per, ["arch_label", "task_setting", "split", "length"])
    chart(band, band_lines(alt.X("length:Q", title="sequence length (problem size)"), "accuracy",
                            dash=("split", ["test", "ood_len"])),
          facet="task_setting", independent_x=True)
    st.caption("Solid: split `test`, lengths up to the training length; dashed: split `ood_len`, longer "
               "sequences. " + BAND)

elif task in ("mqar", "induction"):
    st.subheader("Accuracy on every split")
    ev = finals[(finals["name"] == "accuracy") & ~finals["split"].isin(["val", "train", "curve"])]
    ev = pick_setting(ev, f"{task}_setting")
    band = common.mean_band(ev, ["arch_label", "split"])
    base = alt.Chart().encode(x=alt.X("arch_label:N", title="arch"), xOffset="split:N")
    chart(band, [base.mark_bar().encode(y=alt.Y("mean:Q", title="accuracy"), color="split:N",
                                        tooltip=["arch_label", "split", alt.Tooltip("mean:Q", format=".3f"),
                                                 "seeds"]),
                 base.mark_errorbar().encode(y=alt.Y("min:Q", title="accuracy"), y2="max:Q")])
    st.caption("Out-of-distribution splits (`ood_*`) use more pairs or longer sequences than training.")

with st.expander("Final metrics (mean over seeds)"):
    st.dataframe(common.mean_band(finals, ["arch_label", "task_setting", "split", "name"]), hide_index=True,
                 width="stretch")
