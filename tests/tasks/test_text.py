"""The text task: sources, held-out splits, tokenizers and its bits-per-byte metrics."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from tasks import IGNORE, make_task
from tasks.text import TextError, _corpus
from tasks.tokenizer import EOT, BPETokenizer, ByteTokenizer, load_tokenizer

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega").split()


def write_corpus(tmp_path, n_files=6, words_per_file=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = tmp_path / "corpus"
    d.mkdir()
    for i in range(n_files):
        idx = torch.randint(0, len(WORDS), (words_per_file,), generator=g).tolist()
        (d / f"doc{i:02d}.txt").write_text(" ".join(WORDS[j] for j in idx) + f"\nend of file {i} é\n")
    return d


def text_task(tmp_path, **params):
    params.setdefault("files", (str(tmp_path / "corpus"),))
    params.setdefault("seq_len", 32)
    _corpus.cache_clear()
    return make_task("text", params)


def test_splits_are_windows_of_the_stream_and_val_test_are_its_held_out_tail(tmp_path):
    d = write_corpus(tmp_path)
    t = text_task(tmp_path)
    raw = b"".join(p.read_bytes() + b"\x00" for p in sorted(d.iterdir()))  # one separator per document
    stream = t.corpus.stream
    assert stream.numel() == len(raw)
    assert int((stream == t.tokenizer.eot_id).sum()) == 6  # one end-of-text per document
    train, val, test = (t.generate(s) for s in ("train", "val", "test"))
    for data in (train, val, test):
        assert data.inputs.shape[1] == 32
        assert torch.equal(data.inputs[:, 1:], data.targets[:, :-1])  # next-token targets
        assert not (data.targets == IGNORE).any()
    # val and test: consecutive windows from their portion's start, the same for every seed
    v0 = t.corpus.train_end
    assert torch.equal(val.inputs[0], stream[v0: v0 + 32])
    assert torch.equal(test.inputs[0], stream[t.corpus.val_end: t.corpus.val_end + 32])
    assert torch.equal(t.generate("val", seed=5).inputs, val.inputs)
    # no training window reaches into val or test
    n = train.inputs.shape[0]
    assert n == (t.corpus.train_end - 1 - _offset(train, stream)) // 32
    assert len(test) == (stream.numel() - t.corpus.val_end - 1) // 32
    assert abs((stream.numel() - t.corpus.val_end) - round(0.05 * stream.numel())) <= 1


def _offset(data, stream):
    first = data.inputs[0]
    for o in range(32):
        if torch.equal(stream[o: o + 32], first):
            return o
    raise AssertionError("train's first window is not in the stream's first 32 tokens")


def test_train_windows_start_at_a_seeded_offset_and_n_caps_them(tmp_path):
    write_corpus(tmp_path)
    t = text_task(tmp_path)
    offsets = {_offset(t.generate("train", seed=s), t.corpus.stream) for s in range(6)}
    assert len(offsets) > 1
    assert torch.equal(t.generate("train", seed=3).inputs, t.generate("train", seed=3).inputs)
    capped = text_task(tmp_path, n_train=7, n_val=3)
    assert len(capped.generate("train")) == 7 and len(capped.generate("val")) == 3


def test_bits_per_byte_is_the_summed_nll_in_bits_over_the_bytes_predicted(tmp_path):
    write_corpus(tmp_path)
    t = text_task(tmp_path)
    data = t.generate("test")
    scored = data.targets[data.targets != IGNORE]
    nll = torch.rand(scored.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    m = t.score_loglikelihood(nll, data.targets, "test")
    n_bytes = int((scored != t.tokenizer.eot_id).sum())  # end-of-text stands for no byte
    assert m["bits_per_byte"] == pytest.approx(float(nll.sum()) / math.log(2) / n_bytes, rel=1e-12)
    assert m["compression"] == pytest.approx(1 - m["bits_per_byte"] / 8)
    assert m["loss"] == pytest.approx(float(nll.mean()))
    assert m["perplexity"] == pytest.approx(math.exp(float(nll.mean())))
    # a uniform guess over the 256 byte values saves nothing
    uniform = torch.full_like(nll, math.log(256))
    uniform[scored == t.tokenizer.eot_id] = 0
    assert t.score_loglikelihood(uniform, data.targets, "test")["compression"] == pytest.approx(0.0, abs=1e-12)


def test_the_no_skill_floor_is_the_unigram_model_of_the_split(tmp_path):
    write_corpus(tmp_path)
    t = text_task(tmp_path)
    data = t.generate("test")
    floor, name = t.floor(data, "test")
    assert name == "unigram"
    scored = data.targets.flatten()
    p = torch.bincount(scored, minlength=257).double() / scored.numel()
    bits = float(-(torch.log2(p[scored])).sum())
    assert floor == pytest.approx(1 - bits / int((scored != 256).sum()) / 8)
    assert 0.2 < floor < 0.6  # English-like words: about 4 bits a byte


def test_bpe_is_trained_on_the_training_text_only_and_counts_bytes_per_token(tmp_path):
    d = write_corpus(tmp_path, n_files=5)
    # a word only the held-out tail (the last file, sorted) holds, repeated: a BPE trained on it would merge it
    (d / "zz_last.txt").write_text("qwxz " * 400)
    t = text_task(tmp_path, tokenizer="bpe", vocab_size=300)
    tok = t.tokenizer
    assert isinstance(tok, BPETokenizer) and tok.vocab_size <= 300
    assert t.corpus.stream.numel() * 1.3 < t.corpus.n_bytes + 6  # merges: fewer tokens than bytes
    assert "qwxz" not in tok.tok.get_vocab() and " qwxz" not in tok.tok.get_vocab()
    # bytes per token: decoding any token sequence gives as many UTF-8 bytes as the table says
    ids = t.corpus.stream[:500].tolist()
    text = tok.decode(ids)
    assert len(text.encode("utf-8")) == int(tok.token_bytes[torch.tensor(ids)].sum())
    assert tok.encode(text) == [i for i in ids if i != tok.eot_id]


def test_a_checkpoint_carries_its_tokenizer(tmp_path):
    from harness.config import parse_run_config
    from harness.train import train

    write_corpus(tmp_path)
    for kind in ("bytes", "bpe"):
        _corpus.cache_clear()
        cfg = parse_run_config({"arch": {"name": "transformer", "d_model": 32, "n_layers": 1, "n_heads": 2},
                                "task": {"name": "text", "params": {"files": [str(tmp_path / "corpus")],
                                                                   "seq_len": 32, "tokenizer": kind,
                                                                   "vocab_size": 300}},
                                "train": {"steps": 3, "eval_every": 3, "batch_size": 8}})
        r = train(cfg, checkpoint_dir=tmp_path / kind)
        assert r.status == "done", r.error
        meta = json.loads((tmp_path / kind / r.run_id / "config.json").read_text())
        assert meta["tokenizer"]["kind"] == kind and meta["seq_len"] == 32
        assert meta["text"]["documents"] == 6 and len(meta["text"]["sha256"]) == 64
        tok = load_tokenizer(tmp_path / kind / r.run_id, meta["tokenizer"])
        assert tok.encode("alpha beta") == make_task("text", cfg.task.params).tokenizer.encode("alpha beta")
        assert ((tmp_path / kind / r.run_id / "tokenizer.json").is_file()) == (kind == "bpe")
        assert {"bits_per_byte", "compression", "perplexity", "loss", "accuracy"} <= {n for _, n in r.final}
        assert r.scores["metric"] == "compression" and r.scores["floor_strategy"] == "unigram"


def test_datasets_read_local_json_and_saved_directories(tmp_path):
    import datasets

    rows = [{"text": f"{w} " * 50, "other": i} for i, w in enumerate(WORDS)]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = text_task(tmp_path, files=(), dataset=str(jsonl))
    assert t.corpus.n_documents == len(WORDS)
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(saved))
    t2 = text_task(tmp_path, files=(), dataset=str(saved))
    assert torch.equal(t.corpus.stream, t2.corpus.stream)
    txt = tmp_path / "whole.txt"  # a .txt through datasets is one document, not one per line
    txt.write_text("".join(r["text"] + "\n" for r in rows))
    t3 = text_task(tmp_path, files=(), dataset=str(txt))
    assert t3.corpus.n_documents == 1 and t3.corpus.n_bytes == txt.stat().st_size
    with pytest.raises(TextError, match="no column 'body'.*text, other"):
        text_task(tmp_path, files=(), dataset=str(jsonl), text_column="body").corpus


@pytest.mark.parametrize("params, match", [
    ({}, "exactly one source"),
    ({"files": ("a.txt",), "dataset": "x/y"}, "exactly one source"),
])
def test_a_text_config_needs_one_source(params, match):
    from tasks import TaskConfigError

    with pytest.raises(TaskConfigError, match=match):
        make_task("text", params)


def test_bad_sources_get_one_error_naming_the_fix(tmp_path):
    write_corpus(tmp_path)
    with pytest.raises(TextError, match="no such file or directory: 'missing.txt'"):
        text_task(tmp_path, files=("missing.txt",)).corpus
    with pytest.raises(TextError, match="matches no file"):
        text_task(tmp_path, files=(str(tmp_path / "*.nothing"),)).corpus
    with pytest.raises(TextError, match="too few for seq_len 8000.*lower task.seq_len"):
        text_task(tmp_path, seq_len=8000).corpus


def test_cli_trains_text_and_refuses_a_missing_file_with_exit_2(tmp_path):
    write_corpus(tmp_path)
    base = [sys.executable, "-m", "harness.cli", "train", "--arch", "transformer", "--task", "text",
            "--db", str(tmp_path / "r.db"), "--checkpoint-dir", str(tmp_path / "ck"), "-q",
            "--set", "arch.d_model=32", "--set", "arch.n_layers=1", "--set", "train.steps=4",
            "--set", "train.eval_every=2", "--set", "task.params.seq_len=32"]
    bad = subprocess.run(base + ["--set", 'task.params.files=["nope/*.txt"]'], capture_output=True, text=True,
                         cwd=tmp_path)
    assert bad.returncode == 2, bad.stderr
    assert "matches no file" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "ck").exists()
    ok = subprocess.run(base + ["--set", f'task.params.files=["{tmp_path / "corpus"}"]'], capture_output=True,
                        text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    import sqlite3

    con = sqlite3.connect(tmp_path / "r.db")
    curve = con.execute("select step, value from metrics where split='val' and name='bits_per_byte' and final=0 "
                        "order by step").fetchall()
    assert [s for s, _ in curve] == [2, 4] and all(0 < v < 9 for _, v in curve)


def test_byte_tokenizer_round_trips_utf8():
    tok = ByteTokenizer()
    s = "naïve — ünïcode ✓"
    assert tok.decode(tok.encode(s)) == s and len(tok.encode(s)) == len(s.encode("utf-8"))
    assert tok.decode([*tok.encode("a"), tok.eot_id, *tok.encode("b")]) == "ab"
    assert EOT == "<|endoftext|>"


def test_max_bytes_caps_files_and_datasets_alike(tmp_path):
    write_corpus(tmp_path)
    t = text_task(tmp_path, max_bytes=5000)
    assert t.corpus.n_bytes == 5000 and t.corpus.n_documents == 3  # two whole files of ~2.2 kB and a cut third
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": "x" * 3000}) + "\n" for _ in range(4)))
    d = text_task(tmp_path, files=(), dataset=str(rows), max_bytes=5000)
    assert d.corpus.n_bytes == 5000 and d.corpus.n_documents == 2
