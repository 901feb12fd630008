"""Kernels: time, TFLOP/s and share of peak vs sequence length, and history across commits."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import common
from harness.queries import latest_kernels

url = common.db_url()
st.title("Kernels")

kf = common.kernel_frame(url)
if kf.empty:
    st.info("No kernel benchmarks yet. Time the kernels against SDPA and store the numbers with:")
    st.code("archbench bench", language="bash")
    st.stop()

failed = kf[kf["status"] != "ok"]
ok = kf[(kf["status"] == "ok") & kf["median_ms"].notna()]
if ok.empty:
    st.warning(f"All {len(kf)} stored kernel benchmarks failed; see their errors below.")
    st.dataframe(failed[["op", "impl", "mode", "dtype", "shape", "seq_len", "status", "error", "device_name",
                         "git_sha"]],
                 hide_index=True)
    st.stop()

GRID = ["batch", "heads", "head_dim", "causal"]  # the chart's x axis is seq_len


def grid_label(g: tuple) -> str:
    b, h, d, causal = g
    return f"B{b} H{h} D{d}" + ("" if causal else " non-causal")


c = st.columns(4)
device = c[0].selectbox("Device", sorted(ok["device_name"].unique()), key="k_device")
ok = ok[ok["device_name"] == device]
dtype = c[1].selectbox("dtype", sorted(ok["dtype"].unique()), key="k_dtype")
ok = ok[ok["dtype"] == dtype]
mode = c[2].selectbox("Mode", sorted(ok["mode"].unique()), key="k_mode")
ok = ok[ok["mode"] == mode]
grids = sorted({tuple(g) for g in ok[GRID].itertuples(index=False)})
grid = c[3].selectbox("Shape (batch, heads, head dim)", grids, format_func=grid_label, key="k_shape")
ok = ok[(ok[GRID] == pd.Series(grid, index=GRID)).all(axis=1)]
kernels = sorted(ok["kernel"].unique())
pick = st.multiselect("Kernels (op/impl)", kernels, default=kernels, key="k_kernels")
ok = ok[ok["kernel"].isin(pick)]
if ok.empty:
    st.warning("Pick at least one kernel.")
    st.stop()

# the newest row per kernel and point (the query `archbench leaderboard --kernels` prints),
# of the chosen ones that worked
latest = latest_kernels(kf)
latest = latest[(latest["status"] == "ok") & latest["median_ms"].notna() & latest["id"].isin(ok["id"])]
color = alt.Color("kernel:N", title="op/impl")
tip = ["kernel", "seq_len", alt.Tooltip("median_ms:Q", format=".4f"), alt.Tooltip("tflops:Q", format=".1f"),
       alt.Tooltip("vs_sdpa:Q", format=".2f"), "git_sha"]
x = alt.X("seq_len:Q", title="sequence length", scale=alt.Scale(type="log", base=2))


def line(y: alt.Y) -> alt.Chart:
    return alt.Chart(latest).mark_line(point=True).encode(x=x, y=y, color=color, tooltip=tip).properties(height=300)


st.subheader("Latest measurements")
left, right = st.columns(2)
with left:
    st.altair_chart(line(alt.Y("median_ms:Q", title="median time (ms)", scale=alt.Scale(type="log"))),
                    width="stretch")
with right:
    st.altair_chart(line(alt.Y("tflops:Q", title="TFLOP/s")), width="stretch")
if latest["peak_fraction"].notna().any():
    st.altair_chart(line(alt.Y("peak_fraction:Q", title="share of peak (dense bf16/fp16)",
                               axis=alt.Axis(format="%"))), width="stretch")
else:
    st.caption(f"Share of peak: unknown for {device} (no peak on record for this device and dtype).")

st.subheader("History across commits")
st.caption("Each point is one stored measurement; a regression shows as a step up in time.")
h1, h2, h3 = st.columns(3)
hk = h1.selectbox("Kernel", pick, index=pick.index("path/triton") if "path/triton" in pick else 0, key="k_hist_kernel")
lens = sorted(ok["seq_len"].unique())
hl = h2.multiselect("Sequence lengths", lens, default=lens[-2:], key="k_hist_lens")
order = h3.radio("x axis", ["time", "commit order"], horizontal=True, key="k_hist_x")
hist = ok[(ok["kernel"] == hk) & ok["seq_len"].isin(hl)].copy()
if hist.empty:
    st.info("No measurements for that choice.")
else:
    hist["git_sha"] = hist["git_sha"].fillna("(unknown)").str[:8]
    if order == "time":
        hx = alt.X("created_at:T", title="measured at")
    else:
        first = hist.groupby("git_sha")["created_at"].min().sort_values()
        hx = alt.X("git_sha:N", title="commit (oldest first)", sort=list(first.index))
    st.altair_chart(
        alt.Chart(hist).mark_line(point=True, interpolate="step-after" if order == "time" else "linear").encode(
            x=hx, y=alt.Y("median_ms:Q", title="median time (ms)", scale=alt.Scale(zero=False)),
            color=alt.Color("seq_len:N", title="seq_len"),
            tooltip=["git_sha", "created_at", "seq_len", alt.Tooltip("median_ms:Q", format=".4f")],
        ).properties(height=300), width="stretch")

with st.expander("Latest rows (table)"):
    cols = ["op", "impl", "seq_len", "median_ms", "vs_sdpa", "tflops", "peak_fraction", "tokens_per_s",
            "peak_mem_bytes", "git_sha", "created_at"]
    st.dataframe(latest.sort_values(["seq_len", "op", "impl"])[cols], hide_index=True, width="stretch",
                 column_config={"peak_fraction": st.column_config.NumberColumn("share of peak", format="percent"),
                                "vs_sdpa": st.column_config.NumberColumn("vs SDPA", format="%.2fx")})
if not failed.empty:
    with st.expander(f"{len(failed)} failed measurements"):
        st.dataframe(pd.DataFrame(failed[["op", "impl", "mode", "dtype", "shape", "seq_len", "status",
                                          "error", "device_name", "git_sha"]]), hide_index=True)
