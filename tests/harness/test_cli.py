"""Bad input: one clear error naming the fix, exit 2, nothing written."""

import json
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app
from tests.conftest import ARCHBENCH, tiny_run

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def trained(tmp_path):
    """A checkpoint from a tiny run, and its database."""
    db = tmp_path / "r.db"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(tiny_run()))
    res = invoke("train", cfg, "--db", db, "--checkpoint-dir", tmp_path / "ck", "-q")
    assert res.exit_code == 0, res.output
    ck = next((tmp_path / "ck").iterdir())
    return db, ck


@pytest.mark.parametrize("args, needle", [
    (["train", "--task", "mqar", "--arch", "nosuch"], "unknown architecture 'nosuch'"),
    (["train", "--task", "nosuch"], "unknown task 'nosuch'"),
    (["train", "--task", "mqar", "--set", "optimizer.lrr=1"], "optimizer.lrr: unknown key"),
    (["train", "--task", "mqar", "--set", "task.params.num_pairs=40"], "seq_len >= 4 * num_pairs"),
    (["train", "--task", "mqar", "--set", "task.params.vocab_size=32"], "vocab_size > seq_len"),
    (["train", "--task", "mqar", "--preset", "gigantic"], "no preset 'gigantic'"),
    (["train", "--task", "mqar", "--set", "nonsense"], "--set takes key=value"),
    (["train"], "--task NAME"),
    (["suite", "nosuch"], "unknown suite 'nosuch'"),
    (["sweep", "missing.yaml"], "does not exist"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    res = invoke(*args, "--db", tmp_path / "r.db")
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "r.db").exists()


def test_bad_database_url_exits_2(tmp_path):
    res = invoke("train", "--task", "mqar", "--db", "nosuchdialect://x")
    assert res.exit_code == 2 and "cannot use database URL" in res.output
    res = invoke("leaderboard", "--db", tmp_path / "missing.db")
    assert res.exit_code == 2 and "archbench suite quick" in res.output
    assert not (tmp_path / "missing.db").exists()


def test_damaged_checkpoints_exit_2_and_write_nothing(trained, tmp_path):
    db, ck = trained
    before = (db.stat().st_size, db.with_name(db.name + "-wal").stat().st_size if db.with_name(db.name + "-wal").exists() else 0)
    # missing, not a checkpoint, truncated weights, garbage config
    res = invoke("eval", tmp_path / "nope", "--db", db)
    assert res.exit_code == 2 and "does not exist" in res.output
    res = invoke("eval", tmp_path, "--db", db)
    assert res.exit_code == 2 and "not an archbench checkpoint" in res.output
    weights = ck / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    res = invoke("eval", ck, "--db", db)
    assert res.exit_code == 2 and "truncated or modified" in res.output
    weights.write_bytes(data)
    cfg = json.loads((ck / "config.json").read_text())
    cfg.pop("weights_sha256")
    (ck / "config.json").write_text(json.dumps(cfg))
    weights.write_bytes(data[:100])
    res = invoke("eval", ck, "--db", db)
    assert res.exit_code == 2 and "truncated or damaged" in res.output
    (ck / "config.json").write_text("{not json")
    res = invoke("eval", ck, "--db", db)
    assert res.exit_code == 2 and "not valid JSON" in res.output
    from harness.store import Store

    with Store(f"sqlite:///{db}").session() as s:
        from sqlalchemy import text

        assert s.execute(text("select count(*) from evaluations")).scalar() == 0


def test_eval_cli_prints_and_stores_scores(trained, tmp_path):
    db, ck = trained
    res = invoke("eval", ck, "--db", db, "--format", "json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    test_acc = [r["value"] for r in rows if r["split"] == "test" and r["name"] == "accuracy"][0]
    out = json.loads(invoke("runs", "--db", db, "--format", "json").output)
    assert out[0]["test"] == test_acc
    res = invoke("eval", ck, "--db", db, "--set", "vocab_size=4096")
    assert res.exit_code == 2 and "the model knows 64" in res.output


def _stored_evaluations(db, data_file):
    from sqlalchemy import text

    from harness.store import Store

    store = Store(str(db), readonly=True)
    try:
        with store.session() as s:
            rows = s.execute(text("select split, name, value, n_examples from evaluations where data_file = :f"),
                             {"f": str(data_file)}).all()
    finally:
        store.close()
    return {name: (split, value, n) for split, name, value, n in rows}


def _argmax_tokens(ck, inputs):
    """The checkpoint's arg-max next token at every position, from a plain forward pass
    (not harness.evaluate)."""
    import torch

    from models import load_checkpoint

    model, _ = load_checkpoint(ck)
    with torch.no_grad():
        return model.eval()(inputs).argmax(-1)


def test_eval_on_a_data_file(trained, tmp_path):
    """The file's own labels are scored: labels built from the model's own predictions, right
    at exactly 7 of every 16 scored positions, give accuracy 7/16, printed and stored."""
    import numpy as np
    import torch

    from tasks import make_task

    db, ck = trained
    t = make_task("mqar", {"vocab_size": 64, "seq_len": 32, "num_pairs": 4})
    d = t.generate("test", 16, seed=123)
    preds = _argmax_tokens(ck, d.inputs)
    scored = (d.targets != -100).nonzero(as_tuple=True)
    assert len(scored[0]) % 16 == 0
    right = torch.arange(len(scored[0])) % 16 < 7
    labels = torch.full_like(d.targets, -100)
    labels[scored] = torch.where(right, preds[scored], (preds[scored] + 1) % 64)
    np.savez(tmp_path / "set.npz", inputs=d.inputs.numpy(), labels=labels.numpy())
    res = invoke("eval", ck, "--db", db, "--data", tmp_path / "set.npz", "--format", "json")
    assert res.exit_code == 0, res.output
    printed = {r["name"]: r for r in json.loads(res.output)}
    assert printed["accuracy"]["split"] == "file" and printed["accuracy"]["n_examples"] == 16
    assert printed["accuracy"]["value"] == pytest.approx(7 / 16, abs=1e-9)
    assert _stored_evaluations(db, tmp_path / "set.npz")["accuracy"] == ("file", pytest.approx(7 / 16, abs=1e-12), 16)
    # every label right: 1; every label wrong: 0
    for name, lab, want in (("all.npz", preds, 1.0), ("none.npz", (preds + 1) % 64, 0.0)):
        full = torch.where(d.targets != -100, lab, d.targets)
        np.savez(tmp_path / name, inputs=d.inputs.numpy(), labels=full.numpy())
        res = invoke("eval", ck, "--db", db, "--data", tmp_path / name, "--format", "json")
        assert res.exit_code == 0, res.output
        assert {r["name"]: r["value"] for r in json.loads(res.output)}["accuracy"] == want, name
        assert _stored_evaluations(db, tmp_path / name)["accuracy"][1] == want
    np.savez(tmp_path / "bad.npz", inputs=d.inputs.numpy() + 1000, labels=d.targets.numpy())
    res = invoke("eval", ck, "--db", db, "--data", tmp_path / "bad.npz")
    assert res.exit_code == 2 and "outside the model's vocabulary" in res.output


def test_leaderboard_formats_agree(trained):
    db, _ = trained
    js = json.loads(invoke("leaderboard", "--db", db, "--format", "json").output)
    csv = invoke("leaderboard", "--db", db, "--format", "csv").output.splitlines()
    md = invoke("leaderboard", "--db", db, "--format", "markdown").output
    assert js[0]["arch"] == "transformer" and js[0]["rank"] == 1
    assert csv[0].startswith("rank,arch,size,score") and len(csv) == 2
    assert md.startswith("| rank | arch |")
    assert invoke("leaderboard", "--db", db, "--format", "yaml").exit_code == 2


def test_real_entry_point_exits_2_without_traceback(tmp_path, cli_env):
    p = subprocess.run(ARCHBENCH + ["train", "--task", "mqar", "--arch", "nosuch", "--db", str(tmp_path / "r.db")],
                       capture_output=True, text=True, env=cli_env, cwd=tmp_path)
    assert p.returncode == 2
    assert "unknown architecture 'nosuch'" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r.db").exists()


def test_tasks_and_archs_list_the_registries():
    res = invoke("tasks", "--format", "json")
    names = {r["task"] for r in json.loads(res.output)}
    assert "mqar" in names
    res = invoke("archs", "--format", "json", "--d-model", "64", "--n-heads", "2")
    rows = {r["arch"]: r for r in json.loads(res.output)}
    assert {"transformer", "nope", "sliding"} <= set(rows)
    assert rows["transformer"]["vs_transformer"] == 1.0


def test_dashboard_serves_a_missing_store_but_not_a_bad_url(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)  # no server
    res = invoke("dashboard", "--db", "nosuchdialect://x")
    assert res.exit_code == 2 and "cannot use database URL" in res.output and not calls
    res = invoke("dashboard", "--db", tmp_path / "missing.db", "--port", 8765)
    assert res.exit_code == 0, res.output
    assert "archbench suite quick" in res.output            # the note; the page shows the same
    (cmd, env), = calls
    assert cmd[cmd.index("--server.port") + 1] == "8765" and env["ARCHBENCH_DB"].endswith("missing.db")
    assert not (tmp_path / "missing.db").exists()


@pytest.fixture
def flipflop_checkpoint(tmp_path):
    db = tmp_path / "ff.db"
    cfg = tmp_path / "ff.yaml"
    cfg.write_text(yaml.safe_dump(tiny_run(task={"name": "flipflop", "params": {
        "seq_len": 32, "n_train": 128, "n_val": 32, "n_test": 32}})))
    res = invoke("train", cfg, "--db", db, "--checkpoint-dir", tmp_path / "ck", "-q")
    assert res.exit_code == 0, res.output
    return db, next((tmp_path / "ck").iterdir())


def test_eval_reads_the_published_text_formats_and_records_their_hash(flipflop_checkpoint, tmp_path):
    """Flip-flop's published format (strings "w1i0r1...") from JSONL, Parquet and a saved Hugging
    Face dataset scores exactly as the same examples as tensors, with accuracy and glitch rate."""
    import numpy as np
    import pandas as pd
    from sqlalchemy import text

    from harness.store import Store
    from models.checkpoint import file_sha256
    from tasks import make_task
    from tasks.flipflop import ALPHABET

    db, ck = flipflop_checkpoint
    data = make_task("flipflop", {"seq_len": 32}).generate("sparse", 24, seed=7)
    strings = ["".join(ALPHABET[t] for t in row) for row in data.inputs.tolist()]
    np.savez(tmp_path / "ff.npz", inputs=data.inputs.numpy(), labels=data.targets.numpy())
    (tmp_path / "ff.jsonl").write_text("".join(json.dumps({"text": s}) + "\n" for s in strings))
    pd.DataFrame({"text": strings}).to_parquet(tmp_path / "ff.parquet")
    sources = [tmp_path / "ff.npz", tmp_path / "ff.jsonl", tmp_path / "ff.parquet"]
    import datasets  # in the dev extras
    # laid out like the hub's synthseq/flipflop: in-distribution sequences in split "val"
    datasets.DatasetDict({"val": datasets.Dataset.from_dict({"text": strings})}).save_to_disk(tmp_path / "hf")
    sources.append(tmp_path / "hf")

    # the expected scores, from a plain forward pass on the generated examples
    preds = _argmax_tokens(ck, data.inputs)
    mask = data.targets != -100
    correct = (preds == data.targets) & mask
    accuracy = float(correct.sum()) / int(mask.sum())
    expected = {"accuracy": accuracy, "glitch_rate": 1 - accuracy,
                "sequence_accuracy": float((correct == mask).all(dim=1).double().mean())}
    assert 0 < accuracy < 1  # a partly trained model: a wrong label reading would show

    for src in sources:
        res = invoke("eval", ck, "--db", db, "--data", src, "--format", "json")
        assert res.exit_code == 0, (src, res.output)
        rows = {r["name"]: r["value"] for r in json.loads(res.output)}
        assert rows == pytest.approx(expected, abs=1e-6), src  # printed to 10 digits
        stored = _stored_evaluations(db, src)
        assert {k: v for k, (_, v, _) in stored.items()} == pytest.approx(expected, abs=1e-6), src
        assert {(split, n) for split, _, n in stored.values()} == {("file", 24)}
    store = Store(str(db), readonly=True)
    with store.session() as s:
        stored = dict(s.execute(text("select data_file, data_sha256 from evaluations")).all())
    for src in sources[:3]:
        assert stored[str(src)] == file_sha256(src)
    assert stored[str(sources[3])] is not None and len(stored[str(sources[3])]) == 64


def test_eval_data_errors_name_the_fix(flipflop_checkpoint, tmp_path):
    db, ck = flipflop_checkpoint
    (tmp_path / "bad.jsonl").write_text('{"text": "w1r1x"}\n')
    for src, needle in ((tmp_path / "bad.jsonl", "even length"), (tmp_path / "none.jsonl", "no such file"),
                        ("nosuchid", "neither a file nor a Hugging Face dataset id")):
        res = invoke("eval", ck, "--db", db, "--data", src)
        assert res.exit_code == 2 and needle in res.output, res.output
        assert "Traceback" not in res.output


@pytest.fixture
def two_sweeps(tmp_path):
    """A seeded store: 3 architectures x 2 sizes; the d64 runs are sweep ``wide`` and finished last."""
    from datetime import datetime

    from sqlalchemy import update

    from harness.store import Run, Store
    from harness.store.synthetic import seed_database

    url = f"sqlite:///{tmp_path / 'two.db'}"
    seed_database(url, archs=["transformer", "fox", "path"], sizes=[(32, 2, 2), (64, 2, 2)], lrs=[1e-3],
                  seeds=2, curve_points=2, kernels=False)
    store = Store(url)
    with store.session() as s:
        s.execute(update(Run).where(Run.size == "d64-L2-H2")
                  .values(sweep="wide", finished_at=datetime(2030, 1, 1)))
    store.close()
    return url


def test_leaderboard_ranks_the_latest_sweep_unless_told(two_sweeps):
    res = invoke("leaderboard", "--db", two_sweeps)
    assert res.exit_code == 0 and "sweep 'wide' (the latest" in res.output
    latest = json.loads(invoke("leaderboard", "--db", two_sweeps, "--format", "json").output)
    assert {r["size"] for r in latest} == {"d64-L2-H2"} and len(latest) == 3
    quick = json.loads(invoke("leaderboard", "--db", two_sweeps, "--suite", "quick", "--format", "json").output)
    assert {r["size"] for r in quick} == {"d32-L2-H2"}
    every = json.loads(invoke("leaderboard", "--db", two_sweeps, "--all", "--format", "json").output)
    assert len(every) == 6


def test_leaderboard_flags(two_sweeps):
    res = invoke("leaderboard", "--db", two_sweeps, "--exclude-failed")
    assert res.exit_code == 0 and "runs excluded (--exclude-failed)" in res.output
    res = invoke("leaderboard", "--db", two_sweeps, "--sweep", "nosuch")
    assert res.exit_code == 2 and "no finished runs of sweep 'nosuch'" in res.output and "quick, wide" in res.output
    res = invoke("leaderboard", "--db", two_sweeps, "--sweep", "quick", "--all")
    assert res.exit_code == 2 and "not both" in res.output
