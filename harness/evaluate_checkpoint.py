"""``archbench eval``: score a saved checkpoint and store the numbers against it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import environment
from harness.errors import UserError
from harness.evaluate import check_vocab, score
from harness.store import Store
from models import load_checkpoint
from models.checkpoint import file_sha256
from tasks import make_task


def evaluate_checkpoint(path: str | Path, *, task: str | None = None, preset: str | None = None,
                        overrides: dict[str, Any] | None = None, data_file: str | Path | None = None,
                        splits: list[str] | None = None, seed: int | None = None) -> list[dict[str, Any]]:
    """Metric rows for ``path`` on its task (or another setting/task, or a data file).

    With no ``task``, the checkpoint's own task is used, its knobs overridden by
    ``overrides`` (say a longer ``seq_len``); with ``data_file`` the file's examples are
    scored by that task's metric as split ``file``.  Nothing is stored here: bad input
    fails before any database is touched; see :func:`store_evaluation`.
    """
    path = Path(path)
    model, meta = load_checkpoint(path)
    trained = meta.get("task") or {}
    name = task or trained.get("name")
    if name is None:
        raise UserError(f"{path} does not record its task; pass --task NAME")
    if task is None or task == trained.get("name"):
        params = dict(trained.get("params", {})) if preset is None else {}
    else:
        params = {}
    params.update(overrides or {})
    t = make_task(name, params, preset)
    if t.vocab_size > model.vocab_size:
        raise UserError(
            f"task {name} with these settings uses {t.vocab_size} tokens but the model knows {model.vocab_size}; "
            f"keep vocab_size <= {model.vocab_size}"
        )
    seed = meta.get("seed", 0) if seed is None else seed

    datasets = {}
    if data_file is not None:
        from tasks.files import load_tensor_file

        try:
            data = load_tensor_file(data_file)
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"cannot use --data {data_file}: {e}") from None
        try:
            check_vocab(data, model.vocab_size, f"--data {data_file}")
        except ValueError as e:
            raise UserError(str(e)) from None
        datasets["file"] = data
    else:
        for s in splits or t.eval_splits:
            if s not in t.splits:
                raise UserError(f"task {name} has no split {s!r}; its splits: {', '.join(t.splits)}")
            datasets[s] = t.generate(s, seed=seed)

    sha = meta.get("weights_sha256") or file_sha256(path / "model.safetensors")
    rows = []
    for split, data in datasets.items():
        for metric, value in score(model, t, data, split).items():
            rows.append(dict(checkpoint_sha256=sha, checkpoint_path=str(path.resolve()), run_id=meta.get("run_id"),
                             task=name, task_config=t.config.model_dump(mode="json"),
                             data_file=str(data_file) if data_file else None, split=split, name=metric,
                             value=value, n_examples=len(data)))
    return rows


def store_evaluation(store: Store, rows: list[dict[str, Any]]) -> None:
    env_id = store.environment(environment.describe("cpu"))
    store.record_evaluation([{**r, "environment_id": env_id} for r in rows])
