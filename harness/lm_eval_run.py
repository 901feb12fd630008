"""``archbench eval MODEL --lm-tasks a,b``: lm-eval benchmarks on a checkpoint, into the store.

``MODEL`` is an archbench text checkpoint (scored by :class:`harness.lm_eval_model.ArchbenchLM`)
or ``hf:PATH`` (a Hugging Face model directory or hub id, scored by lm-eval's own ``hf``
model).  Tasks are lm-eval's (``hellaswag``, ``lambada_openai``, ...), the user's own YAMLs
under ``--include-path``, or archbench's probes exported as lm-eval tasks
(``archbench_needle``, ...; :mod:`harness.lm_eval_tasks`).  Every task name is checked before
any model is loaded (an unknown one gets the close matches); the store is written once,
after every task has run, one row per (task, metric, filter) with its standard error
(lm-eval's ``"N/A"`` stored as NULL), the lm-eval version, the task's version and few-shot
count, and the settings that produced it.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import environment
from harness.errors import UserError
from harness.store import Store

HF_PREFIX = "hf:"


@dataclass
class LmEvalOutcome:
    rows: list[dict[str, Any]]
    label: str
    results: dict[str, Any] = field(default_factory=dict)  # lm-eval's own results dict


def _split_names(tasks: str | list[str]) -> list[str]:
    names = tasks.split(",") if isinstance(tasks, str) else [n for t in tasks for n in t.split(",")]
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise UserError("--lm-tasks names no task; pass e.g. --lm-tasks hellaswag,archbench_needle")
    return list(dict.fromkeys(names))


def task_manager(names: list[str], include_path: list[str] | None = None, *, probe_seed: int = 0,
                 probe_n: int | None = None) -> Any:
    """An lm-eval ``TaskManager`` that knows lm-eval's tasks, the user's ``include_path`` and
    the archbench probes among ``names`` (exported on demand); unknown names are refused."""
    from lm_eval.tasks import TaskManager

    paths = []
    for p in include_path or []:
        if not Path(p).is_dir():
            raise UserError(f"--include-path {p}: no such directory; pass a directory of lm-eval task YAMLs")
        paths.append(str(Path(p).resolve()))
    try:
        from harness.lm_eval_tasks import PROBE_TASKS, export_probe_tasks
    except ImportError:  # the probe export is optional
        PROBE_TASKS, export_probe_tasks = {}, None
    probes = [n for n in names if n in PROBE_TASKS]
    if probes and export_probe_tasks is not None:
        paths.append(str(export_probe_tasks(probes, seed=probe_seed, n=probe_n)))
    tm = TaskManager(include_path=paths or None)
    known = set(tm.all_tasks)
    unknown = [n for n in names if n not in known]
    if unknown:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, sorted(known | set(PROBE_TASKS)), n=4, cutoff=0.6)
            hints.append(f"{n!r}" + (f" (close: {', '.join(close)})" if close else ""))
        raise UserError(f"unknown lm-eval task {', '.join(hints)}; list them with `lm-eval ls tasks`, "
                        f"or pass --include-path DIR for your own task YAMLs")
    return tm


def _model(ref: str, device: str, batch_size: int, max_length: int | None) -> tuple[Any, dict[str, Any]]:
    """The lm-eval model (an object, or lm-eval's name plus args) and what the store records of it."""
    if ref.startswith(HF_PREFIX):
        path = ref[len(HF_PREFIX):]
        if not path:
            raise UserError("hf: needs a path or hub id: hf:PATH")
        local = Path(path).expanduser()
        sha = None
        if local.exists():
            if not (local / "config.json").is_file():
                raise UserError(f"{path} is not a Hugging Face model directory (no config.json); "
                                f"save one with model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR)")
            from harness.evaluate_checkpoint import data_sha256

            sha, path = data_sha256(local), str(local.resolve())
        import importlib.util

        missing = [m for m in ("transformers", "accelerate") if importlib.util.find_spec(m) is None]
        if missing:
            raise UserError(f"hf: models run through lm-eval's hf model, which needs {' and '.join(missing)}: "
                            f"pip install 'archbench[lm-eval]'")
        args = {"pretrained": path, "dtype": "float32"}
        if max_length:
            args["max_length"] = max_length
        info = dict(model=HF_PREFIX + path, model_kind="hf", model_sha256=sha, label=Path(path).name or path,
                    run_id=None)
        return ("hf", args), info
    from harness.lm_eval_model import ArchbenchLM

    lm = ArchbenchLM(checkpoint=ref, device=device, batch_size=batch_size, max_length=max_length)
    meta = lm.meta
    arch = meta.get("arch") or {}
    label = f"{arch.get('name', '?')} d{arch.get('d_model', '?')}x{arch.get('n_layers', '?')}"
    info = dict(model=str(Path(ref).resolve()), model_kind="archbench", model_sha256=meta.get("weights_sha256"),
                label=label, run_id=meta.get("run_id"))
    return lm, info


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None  # lm-eval's "N/A" (and anything else that is not a number)
    return float(v) if math.isfinite(v) else None


def result_rows(results: dict[str, Any], info: dict[str, Any], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """One store row per (task, metric, filter) of lm-eval's ``results`` dict."""
    import lm_eval

    version = getattr(lm_eval, "__version__", None) or "unknown"
    rows = []
    groups = results.get("groups", {})
    parent = {sub: group for group, subs in (results.get("group_subtasks") or {}).items() for sub in subs}
    for task, metrics in {**results.get("results", {}), **groups}.items():
        hib = (results.get("higher_is_better") or {}).get(task, {})
        n_shot = (results.get("n-shot") or {}).get(task)
        samples = (results.get("n-samples") or {}).get(task) or {}
        if task in groups:  # a group scores its subtasks' documents
            subs = [(results.get("n-samples") or {}).get(t) or {} for t in (results.get("group_subtasks") or {})
                    .get(task, [])]
            samples = {"effective": sum(int(x.get("effective") or 0) for x in subs)} if subs else {}
        task_version = (results.get("versions") or {}).get(task)
        config = (results.get("configs") or {}).get(task) or {}
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filt = key.split(",", 1)
            rows.append(dict(
                **info, benchmark=task, group=parent.get(task), metric=metric, filter=filt, value=_float(value),
                stderr=_float(metrics.get(f"{metric}_stderr,{filt}")),
                higher_is_better=hib.get(metric) if isinstance(hib.get(metric), bool) else None,
                n_samples=samples.get("effective") if isinstance(samples, dict) else None,
                num_fewshot=n_shot if isinstance(n_shot, int) else None,
                limit=settings.get("limit"), task_version=None if task_version is None else str(task_version),
                lm_eval_version=str(version),
                settings={**settings, "task_config": _jsonable(config)},
            ))
    return rows


def _jsonable(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj, default=str))


def run_lm_eval(model: str, tasks: str | list[str], *, num_fewshot: int | None = None, limit: float | None = None,
                batch_size: int = 16, device: str = "cpu", include_path: list[str] | None = None,
                max_length: int | None = None, seed: int = 0, probe_n: int | None = None,
                log_samples: bool = False) -> LmEvalOutcome:
    """Run lm-eval's ``simple_evaluate`` on ``model`` and return the rows to store (nothing is stored)."""
    names = _split_names(tasks)
    if limit is not None and limit <= 0:
        raise UserError(f"--limit must be positive (a count, or a fraction below 1); got {limit}")
    if num_fewshot is not None and num_fewshot < 0:
        raise UserError(f"--num-fewshot must be 0 or more; got {num_fewshot}")
    tm = task_manager(names, include_path, probe_seed=seed, probe_n=probe_n)
    lm, info = _model(model, device, batch_size, max_length)
    from lm_eval import simple_evaluate

    kwargs: dict[str, Any] = dict(tasks=names, num_fewshot=num_fewshot, limit=limit, task_manager=tm,
                                  log_samples=log_samples, random_seed=seed, numpy_random_seed=seed,
                                  torch_random_seed=seed, fewshot_random_seed=seed)
    if isinstance(lm, tuple):
        kwargs.update(model=lm[0], model_args=lm[1], batch_size=batch_size, device=device)
    else:
        kwargs.update(model=lm)
    results = simple_evaluate(**kwargs)
    if results is None:  # lm-eval returns None on non-zero ranks only
        raise RuntimeError("lm-eval returned no results")
    settings = dict(num_fewshot=num_fewshot, limit=limit, batch_size=batch_size, device=device, seed=seed,
                    max_length=max_length, include_path=include_path or [], tasks=names)
    return LmEvalOutcome(result_rows(results, info, settings), info["label"], results)


def store_scores(db: str | None, rows: list[dict[str, Any]], device: str = "cpu") -> None:
    store = Store(db)
    env_id = store.environment(environment.describe(device.split(":")[0]))
    store.record_benchmark_scores([{**r, "environment_id": env_id} for r in rows])


def evaluate_lm_and_store(model: str, tasks: str | list[str], db: str | None = None, **kwargs: Any) -> LmEvalOutcome:
    """``archbench eval MODEL --lm-tasks ...``: :func:`run_lm_eval`, then the rows stored."""
    out = run_lm_eval(model, tasks, **kwargs)
    if out.rows:
        store_scores(db, out.rows, kwargs.get("device", "cpu"))
    return out
