import pytest
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from harness.config import parse_run_config, run_id
from harness.evaluate_checkpoint import evaluate_checkpoint
from harness.store import Store
from harness.sweep import run_sweep
from harness.train import lr_factor, train, train_run
from models import register_mixer
from tests.conftest import tiny_run


class _FaultOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    after: int = 3  # forward calls before the fault


@register_mixer("test-nan")
class NaNAfter(nn.Module):
    """Test mixer: outputs NaN after a few forward passes."""

    Options = _FaultOptions

    def __init__(self, d_model, n_heads, options, layer_idx=0, n_layers=1):
        super().__init__()
        self.lin = nn.Linear(d_model, d_model)
        self.calls, self.after = 0, options.after

    def forward(self, x):
        self.calls += 1
        y = self.lin(x)
        return y * float("nan") if self.calls > self.after and self.training else y


@register_mixer("test-crash")
class CrashAfter(NaNAfter):
    """Test mixer: raises after a few forward passes."""

    def forward(self, x):
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("kernel exploded")
        return self.lin(x)


def test_training_learns_and_stores_curve_scores_and_checkpoint(db_url, tmp_path):
    # an easy MQAR (2 pairs, 16 values) so 150 steps learn it on any machine's float order
    easy = {"name": "mqar", "params": {"vocab_size": 32, "seq_len": 16, "num_pairs": 2,
                                       "n_train": 1024, "n_val": 64, "n_test": 64}}
    cfg = parse_run_config(tiny_run(train={"steps": 150, "eval_every": 50}, arch={"n_layers": 2},
                                    task=easy, optimizer={"lr": 3e-3, "warmup_steps": 10}))
    store = Store(db_url)
    r = train_run(cfg, store, checkpoint_dir=tmp_path / "ck", progress=False)
    assert r.status == "done" and r.step == 150
    run = store.get_run(r.run_id)
    assert run.status == "done" and run.attempts == 1
    from models import load_checkpoint

    trained, _ = load_checkpoint(tmp_path / "ck" / r.run_id)
    assert run.n_params == sum(p.numel() for p in trained.parameters())  # shared embeddings once
    assert run.test_score == r.final[("test", "accuracy")]
    assert run.test_score > 4 * run.chance  # learnt something: chance is 1/16, seeds 0-2 reach 0.42-0.48
    curve = store.metrics(r.run_id, final=False)
    assert sorted(curve[curve.name == "accuracy"].step.unique().tolist()) == [50, 100, 150]
    assert (tmp_path / "ck" / r.run_id / "model.safetensors").is_file()
    assert store.checkpoints(r.run_id)[0].sha256 == evaluate_checkpoint_sha(tmp_path / "ck" / r.run_id)


def evaluate_checkpoint_sha(path):
    from models.checkpoint import file_sha256

    return file_sha256(path / "model.safetensors")


def test_eval_reproduces_the_stored_score_exactly(db_url, tmp_path):
    cfg = parse_run_config(tiny_run(train={"steps": 60, "eval_every": 30}))
    store = Store(db_url)
    r = train_run(cfg, store, checkpoint_dir=tmp_path, progress=False)
    rows = evaluate_checkpoint(tmp_path / r.run_id)
    got = {(x["split"], x["name"]): x["value"] for x in rows}
    assert got[("test", "accuracy")] == store.get_run(r.run_id).test_score
    assert got[("val", "accuracy")] == store.get_run(r.run_id).val_score
    # another setting of the same task: longer sequences, same vocabulary
    longer = evaluate_checkpoint(tmp_path / r.run_id, overrides={"seq_len": 48}, splits=["test"])
    assert {x["task_config"]["seq_len"] for x in longer} == {48}


def test_same_seed_same_numbers(tmp_path):
    cfg = parse_run_config(tiny_run())
    a = train_run(cfg, Store(f"sqlite:///{tmp_path / 'a.db'}"), checkpoint_dir=tmp_path / "a", progress=False)
    b = train_run(cfg, Store(f"sqlite:///{tmp_path / 'b.db'}"), checkpoint_dir=tmp_path / "b", progress=False)
    assert a.final == b.final
    from safetensors.torch import load_file

    wa, wb = load_file(tmp_path / "a" / a.run_id / "model.safetensors"), load_file(tmp_path / "b" / b.run_id / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_training_needs_no_store_and_reports_through_callbacks(db_url, tmp_path):
    """``train(cfg)`` returns the scores with no store and writes nothing unless given a
    checkpoint directory; callbacks hear the curve and the end; the numbers are train_run's."""
    cfg = parse_run_config(tiny_run(train={"steps": 30, "eval_every": 10}))

    class Recorder:  # duck-typed: only the hooks it wants
        def __init__(self):
            self.evals, self.ends = [], []

        def on_eval(self, step, rows):
            self.evals.append((step, rows))

        def on_end(self, result):
            self.ends.append(result.status)

    rec = Recorder()
    r = train(cfg, [rec])
    assert r.status == "done" and r.step == 30 and r.checkpoint is None
    assert 0.0 <= r.scores["test_score"] <= 1.0 and r.scores["test_score"] == r.final[("test", "accuracy")]
    assert r.model is not None and r.scores["n_params"] == r.model.num_params()
    assert [step for step, _ in rec.evals] == [10, 20, 30] and rec.ends == ["done"]
    assert ("val", "accuracy") in {(sp, n) for sp, n, _ in rec.evals[-1][1]}
    assert list(tmp_path.iterdir()) == []  # no checkpoint, no store

    stored = train_run(cfg, Store(db_url), checkpoint_dir=tmp_path / "ck", progress=False)
    assert stored.final == r.final and stored.scores == r.scores


@register_mixer("test-interrupt")
class InterruptAfter(NaNAfter):
    """Test mixer: a Ctrl-C arrives during a training forward pass after a few steps."""

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                raise KeyboardInterrupt
        return self.lin(x)


@pytest.mark.parametrize("after", [0, 7])
def test_an_interrupted_run_is_recorded_at_the_last_step_it_finished(db_url, tmp_path, after):
    """Ctrl-C in step after + 1: the run is stored as interrupted at step ``after`` (it was
    always 0), and the interrupt still reaches the caller."""
    cfg = parse_run_config(tiny_run(arch={"name": "test-interrupt", "options": {"after": after}},
                                    train={"steps": 20, "eval_every": 5}))
    store = Store(db_url)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, store, checkpoint_dir=tmp_path, progress=False)
    row = store.get_run(run_id(cfg))
    assert (row.status, row.step) == ("interrupted", after)
    assert "interrupted" in row.error


def test_divergence_and_failure_are_recorded_and_the_sweep_goes_on(db_url, tmp_path):
    nan = parse_run_config(tiny_run(arch={"name": "test-nan", "options": {"after": 3}}))
    crash = parse_run_config(tiny_run(arch={"name": "test-crash", "options": {"after": 5}}))
    ok = parse_run_config(tiny_run())
    store = Store(db_url)
    results = run_sweep([nan, crash, ok], store, sweep="faults", checkpoint_dir=tmp_path, progress=False)
    assert [r.status for r in results] == ["diverged", "failed", "done"]
    d = store.get_run(run_id(nan))
    assert d.status == "diverged" and d.step == 4 and "loss became nan at step 4" in d.error
    f = store.get_run(run_id(crash))
    assert f.status == "failed" and "kernel exploded" in f.error
    # failed and diverged runs are not retried unless asked; the ranking reads them (as no-skill)
    again = run_sweep([nan, crash, ok], store, sweep="faults", checkpoint_dir=tmp_path, progress=False)
    assert [r.status for r in again] == ["skipped:diverged", "skipped:failed", "skipped:done"]
    frame = store.score_frame(sweep="faults").set_index("id")
    assert frame["status"].to_dict() == {run_id(nan): "diverged", run_id(crash): "failed", run_id(ok): "done"}
    assert frame.loc[[run_id(nan), run_id(crash)], "test_score"].isna().all()
    assert frame.loc[run_id(ok), "floor"] >= frame.loc[run_id(ok), "chance"] > 0  # the no-skill floor is stored


def test_early_stop_and_full_batch(db_url, tmp_path):
    cfg = parse_run_config(tiny_run(train={"steps": 400, "eval_every": 20, "early_stop": 0.05, "batch_size": "full"}))
    r = train_run(cfg, Store(db_url), checkpoint_dir=tmp_path, progress=False)
    assert r.status == "done" and r.step < 400 and r.step % 20 == 0


def test_lr_schedule():
    assert lr_factor(0, 100, 10, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_factor(55, 100, 10, "linear", 0.0) == pytest.approx(0.5)
    assert lr_factor(99, 100, 0, "constant", 0.0) == 1.0


def test_progress_reports_the_tokens_trained_on_and_the_bar_shows_tokens_per_second():
    from harness.callbacks import Callback, ProgressBar

    seen = []

    class Record(Callback):
        def on_progress(self, step, loss, acc=None, tokens=None):
            seen.append((step, tokens))

    cfg = parse_run_config(tiny_run(train={"steps": 20, "eval_every": 10, "batch_size": 8}))
    bar = ProgressBar("tiny")
    r = train(cfg, [bar, Record()])
    assert r.status == "done", r.error
    T = train_seq_len(cfg)
    assert seen and all(tokens == step * 8 * T for step, tokens in seen)
    bar.on_start("x", 10)  # the bar itself: tokens per second once tokens arrive
    bar.on_progress(1, 1.0, None, 4096)
    speed = bar.bar.tasks[0].fields["speed"]
    bar.bar.stop()
    assert speed.endswith(" tok/s") and float(speed.split()[0].replace(",", "")) > 0


def train_seq_len(cfg):
    from tasks import make_task

    return make_task(cfg.task.name, cfg.task.params).generate("train", n=1).inputs.shape[1]
