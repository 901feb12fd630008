"""`archbench eval hf:PATH --lm-tasks archbench_*`: a Hugging Face model, built here from a
`transformers` config with random weights and saved to a local directory, probed on the
exported probe tasks through lm-eval's own `hf` model; the scores land in the store and on
the dashboard's Benchmarks page.  Offline: nothing is fetched."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

pytest.importorskip("lm_eval")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
PROBES = ["archbench_flipflop", "archbench_multiplication", "archbench_mqar"]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    d = tmp_path_factory.mktemp("hf") / "tiny-llama"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["12 * 34 = 408", "w0 i1 r0", "k1 v2 k3 v4"] * 20, trainer=trainer)
    eos = "<|endoftext|>"
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=eos, pad_token=eos)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=8192,
                                   eos_token_id=fast.eos_token_id, bos_token_id=fast.bos_token_id,
                                   pad_token_id=fast.pad_token_id)
    transformers.LlamaForCausalLM(cfg).save_pretrained(d)
    fast.save_pretrained(d)
    return d


def test_a_hugging_face_model_is_probed_through_lm_eval_into_the_store(hf_dir, tmp_path):
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "harness.cli", "eval", f"hf:{hf_dir}", "--lm-tasks", ",".join(PROBES),
           "--limit", "4", "--batch-size", "2", "--db", str(db), "--format", "json"]
    env = {**os.environ, **OFFLINE, "ARCHBENCH_CACHE": str(tmp_path / "cache")}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    printed = json.loads(p.stdout)
    con = sqlite3.connect(db)
    rows = con.execute("select model, model_kind, model_sha256, label, benchmark, metric, value, n_samples, "
                       "limit_ from (select *, \"limit\" as limit_ from benchmark_scores)").fetchall()
    assert len(rows) == len(printed) == 3
    assert {r[4] for r in rows} == set(PROBES)
    for model, kind, sha, label, bench, metric, value, n, limit in rows:
        assert model == f"hf:{hf_dir}" and kind == "hf" and len(sha) == 64 and label == "tiny-llama"
        assert metric == ("acc" if bench == "archbench_flipflop" else "exact_match")
        assert 0.0 <= value <= 1.0 and n == 4 and limit == 4
    # the probe export went to the cache named by ARCHBENCH_CACHE, not the home directory
    assert list((tmp_path / "cache").rglob("archbench_flipflop*.yaml"))
    # and the dashboard's Benchmarks page shows the model with those scores
    dashboard_shows(f"sqlite:///{db}", {r[4]: r[6] for r in rows})


def dashboard_shows(url, scores):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    old = os.environ.get("ARCHBENCH_DB")
    os.environ["ARCHBENCH_DB"] = url
    try:
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
        at.run()
        at.switch_page("views/benchmarks.py").run()
    finally:
        if old is None:
            os.environ.pop("ARCHBENCH_DB")
        else:
            os.environ["ARCHBENCH_DB"] = old
    assert not at.exception, [e.value for e in at.exception]
    board = next(df.value for df in at.dataframe if "rank" in df.value.columns)
    assert list(board["model"]) == ["tiny-llama"]
    for bench, value in scores.items():
        (col,) = [c for c in board.columns if c.startswith(bench + " ")]
        assert board[col].iloc[0].startswith(f"{value:.4f}")
    shown = next(df.value for df in at.dataframe if {"source", "task", "value"} <= set(df.value.columns))
    assert set(shown["task"]) == set(scores)


def test_hf_needs_a_model_directory_or_lm_tasks(hf_dir, tmp_path):
    base = [sys.executable, "-m", "harness.cli", "eval"]
    env = {**os.environ, **OFFLINE}
    no_tasks = subprocess.run(base + [f"hf:{hf_dir}", "--db", str(tmp_path / "a.db")], capture_output=True,
                              text=True, env=env)
    assert no_tasks.returncode == 2 and "add --lm-tasks" in no_tasks.stderr
    (tmp_path / "empty").mkdir()
    not_model = subprocess.run(base + [f"hf:{tmp_path / 'empty'}", "--lm-tasks", "archbench_flipflop",
                                       "--db", str(tmp_path / "b.db")], capture_output=True, text=True, env=env)
    assert not_model.returncode == 2 and "not a Hugging Face model directory" in not_model.stderr
    assert not (tmp_path / "a.db").exists() and not (tmp_path / "b.db").exists()
