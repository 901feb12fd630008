"""Every probe's text rendering as an lm-eval task.

:func:`export_probe_tasks` turns each probe's ``render()`` output into a local JSON-lines
file of documents plus an lm-eval task YAML that reads it, in one directory: the include
path for lm-eval's ``TaskManager``::

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from harness.lm_eval_tasks import export_probe_tasks

    path = export_probe_tasks(["archbench_mqar", "archbench_needle"])
    simple_evaluate(model="hf", model_args="pretrained=...", tasks=["archbench_mqar", "archbench_needle"],
                    task_manager=TaskManager(include_path=str(path)))

Nothing is downloaded: the tasks use lm-eval's ``json`` dataset builder on local files
(``dataset_path: json``, ``dataset_kwargs.data_files.test``), so they load with
``HF_DATASETS_OFFLINE=1``.

Which data.  Each probe is generated from its ``quick`` preset (short sequences a text LM
reads in a few hundred tokens; the sizes a pretrained model can be asked about without
training on the probe) and the probe's own test split (``in_dist`` for flip-flop, ``test``
for the others; ``grid`` for needle, see below), at ``seed``.  ``params[probe]`` overrides
that: its keys are the probe's config fields (applied over the preset), plus two reserved
keys, ``preset`` (another preset to start from) and ``split`` (another split of the probe;
needle only exports ``grid``).  ``n`` keeps the first ``n`` documents of each task (of each
length, for needle), so a capped export is a prefix of the full one.  Every key of
``params`` must be a probe name; entries for probes not being exported are ignored (and
are not part of the hash).

Output types (the probe decides):

- ``generate_until``, scored by ``exact_match`` (leading and trailing whitespace ignored,
  everything else exact), for answers that must be produced: multiplication, modular
  addition, mqar, needle, state tracking, induction.  Generation stops at a newline;
  ``max_gen_toks`` is the longest answer of the task in characters plus 4 (every token of
  a byte-level or SentencePiece tokenizer covers at least one character of these ASCII
  answers; the 4 leave room for a leading space token).
- ``multiple_choice``, scored by ``acc``, where the answer is one of a few symbols:
  flip-flop reads, choices ``"0"``/``"1"`` appended directly to the prompt (the bit
  follows the ``r`` in the flip-flop string), chance 0.5.

Needle: "retrieval by length and depth".  The group ``archbench_needle`` holds one
subtask per grid length, ``archbench_needle_len<L>``, and aggregates ``exact_match`` over
them weighted by size.  Row ``i`` of the grid split is cell ``i mod (#lengths x #depths)``
(length-major; :class:`tasks.needle.Needle`); every document carries its ``length`` and
``depth``, so per-cell scores can be read off logged samples.

Tracing.  Every task (and the group) has ``metadata.version`` (:data:`EXPORT_VERSION`) and
``metadata.archbench``: the probe, preset, split, seed, fully resolved probe config and the
export's hash; lm-eval copies task configs into its results.  Documents carry ``index``,
the row of the probe's split they render.

Cache.  The directory is ``<cache_dir>/lm_eval_tasks/<hash>``, ``cache_dir`` defaulting to
``$ARCHBENCH_CACHE`` or ``~/.cache/archbench``; the hash covers every setting (tasks, seed,
``n``, each probe's preset, split and resolved config, :data:`EXPORT_VERSION`).  The same
settings give byte-identical files; an existing export is reused as it is.  An export is
written to a temporary directory beside it and renamed into place, so a crash never leaves
a half export under the final name.  A change to a probe's ``render()`` must bump
:data:`EXPORT_VERSION`, or old exports of the same settings are reused.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError
from tasks import Task, make_task, resolve_task_params
from tasks.base import IGNORE, TaskData, TextExample
from tasks.needle import PAD

EXPORT_VERSION = 1
"""Bumped whenever the exported files would change for the same settings (task layout,
metrics, a probe's rendering): it is part of the directory hash."""

PROBE_TASKS: dict[str, str] = {
    "archbench_flipflop": "flipflop",
    "archbench_mqar": "mqar",  # multi-query associative recall
    "archbench_needle": "needle",
    "archbench_multiplication": "multiplication",
    "archbench_modular_addition": "modular_addition",
    "archbench_state_tracking": "state_tracking",
    "archbench_induction": "induction",
}
"""lm-eval task (or, for needle, group) name -> archbench probe name."""

DEFAULT_PRESET: dict[str, str] = {probe: "quick" for probe in PROBE_TASKS.values()}
"""The preset each probe is exported from unless ``params[probe]["preset"]`` says otherwise."""

CHOICES: dict[str, tuple[str, ...]] = {"flipflop": ("0", "1")}
"""Probes whose answer is one of a few symbols: exported as ``multiple_choice``."""

_STRIP = ["^\\s+", "\\s+$"]  # exact_match ignores leading and trailing whitespace only
_GEN_MARGIN = 4


class ProbeExportError(UserError, ValueError):
    """Bad arguments to :func:`export_probe_tasks` (a split, ``n``, ``seed``)."""


class UnknownProbeTaskError(ProbeExportError):
    """An unknown task or probe name given to :func:`export_probe_tasks`."""


def default_cache_dir() -> Path:
    """``$ARCHBENCH_CACHE``, or ``~/.cache/archbench``."""
    env = os.environ.get("ARCHBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "archbench"


# -- names and settings ----------------------------------------------------------------
def _unknown(kind: str, name: object, known: list[str]) -> UnknownProbeTaskError:
    """The error for an unknown name, with its close matches among ``known`` (compared
    without the common ``archbench_`` prefix, which would make every task name close)."""
    prefixed = str(name).startswith("archbench_")
    by_stem: dict[str, str] = {}  # stem -> the known name to suggest, in the form asked
    for k in known:
        stem = k.removeprefix("archbench_")
        if stem not in by_stem or k.startswith("archbench_") == prefixed:
            by_stem[stem] = k
    stem = str(name).removeprefix("archbench_")
    matches = difflib.get_close_matches(stem, list(by_stem), n=3, cutoff=0.6)
    matches += [k for k in by_stem if stem and k.startswith(stem) and k not in matches]  # abbreviations
    close = [by_stem[c] for c in matches]
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return UnknownProbeTaskError(f"unknown {kind} {name!r}{hint}; known: {', '.join(known)}")


def _task_name(name: str) -> str:
    """An lm-eval task name from a task name or a probe name."""
    if name in PROBE_TASKS:
        return name
    by_probe = {probe: task for task, probe in PROBE_TASKS.items()}
    if name in by_probe:
        return by_probe[name]
    raise _unknown("probe task", name, list(PROBE_TASKS) + list(by_probe))


@dataclass
class _Probe:
    """One probe's resolved export settings."""

    task_name: str
    probe: str
    preset: str
    split: str
    config: dict[str, Any]
    task: Task = field(repr=False)

    def record(self, seed: int) -> dict[str, Any]:
        return {"probe": self.probe, "preset": self.preset, "split": self.split, "seed": seed,
                "config": self.config}


def _resolve(task_name: str, spec: dict[str, Any] | None) -> _Probe:
    probe = PROBE_TASKS[task_name]
    spec = dict(spec or {})
    preset = spec.pop("preset", DEFAULT_PRESET[probe])
    split = spec.pop("split", None)
    config = resolve_task_params(probe, spec, preset)  # raises the task's own clear errors
    task = make_task(probe, spec, preset)
    if probe == "needle":
        if split not in (None, "grid"):
            raise ProbeExportError(
                f"archbench_needle exports the needle grid split (its documents carry length and depth); "
                f"got split={split!r}: leave params['needle']['split'] unset"
            )
        split = "grid"
    elif split is None:
        split = task.test_split
    elif split not in task.splits:
        raise ProbeExportError(f"probe {probe!r} has no split {split!r}; its splits: {', '.join(task.splits)}")
    # JSON round trip: tuples become lists, as they will be in the YAML and the hash
    config = json.loads(json.dumps(config))
    return _Probe(task_name, probe, preset, split, config, task)


def _settings(names: Iterable[str] | None, params: dict[str, dict] | None) -> list[_Probe]:
    if names is None:
        wanted = list(PROBE_TASKS)
    else:
        if isinstance(names, str):
            names = [names]
        chosen = {_task_name(n) for n in names}
        if not chosen:
            raise ProbeExportError(f"no probe tasks to export; known: {', '.join(PROBE_TASKS)}")
        wanted = [t for t in PROBE_TASKS if t in chosen]  # a fixed order, whatever was asked
    params = dict(params or {})
    probes = list(PROBE_TASKS.values())
    for key in params:
        if key not in probes:
            raise _unknown("probe in params", key, probes)
    return [_resolve(t, params.get(PROBE_TASKS[t])) for t in wanted]


def _settings_hash(probes: list[_Probe], seed: int, n: int | None) -> str:
    blob = json.dumps(
        {"export_version": EXPORT_VERSION, "seed": seed, "n": n,
         "tasks": {p.task_name: p.record(seed) for p in probes}},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -- documents ---------------------------------------------------------------------------
def _render_rows(task: Task, data: TaskData, rows: list[int]) -> list[tuple[int, TextExample]]:
    """``(row index, TextExample)`` for ``rows`` of ``data``."""
    sub = TaskData(data.inputs[rows], data.targets[rows])
    examples = task.render(sub)
    if len(examples) == len(rows):
        return list(zip(rows, examples))
    # a rendering that skips rows with nothing scored (tasks.base.scored_rows)
    scored = [r for r, keep in zip(rows, (sub.targets != IGNORE).any(dim=1).tolist()) if keep]
    if len(examples) != len(scored):
        raise RuntimeError(
            f"{task.name}.render returned {len(examples)} examples for {len(rows)} rows "
            f"({len(scored)} with a scored position): cannot tell which row each renders"
        )
    return list(zip(scored, examples))


def _docs(p: _Probe, seed: int, n: int | None) -> dict[str, list[dict[str, Any]]]:
    """lm-eval task name -> its documents, in split order."""
    data = p.task.generate(p.split, seed=seed)
    if p.probe == "needle":
        return _needle_docs(p, data, n)
    rows = list(range(len(data) if n is None else min(n, len(data))))
    docs = []
    for i, ex in _render_rows(p.task, data, rows):
        doc: dict[str, Any] = {"index": i, "prompt": ex.prompt, "answer": ex.answer}
        if p.probe in CHOICES:
            choices = CHOICES[p.probe]
            if ex.answer not in choices:
                raise RuntimeError(f"{p.probe} rendered the answer {ex.answer!r}, not one of {choices}")
            doc["label"] = choices.index(ex.answer)
        docs.append(doc)
    return {p.task_name: docs}


def needle_subtask(length: int) -> str:
    """The lm-eval name of the needle subtask for grid length ``length``."""
    return f"archbench_needle_len{length}"


def _needle_docs(p: _Probe, data: TaskData, n: int | None) -> dict[str, list[dict[str, Any]]]:
    cells = p.task.grid_cells
    lengths = (data.inputs != PAD).sum(dim=1).tolist()
    out: dict[str, list[dict[str, Any]]] = {}
    for L in p.config["grid_lengths"]:
        rows = [i for i in range(len(data)) if cells[i % len(cells)][0] == L]
        if n is not None:
            rows = rows[:n]
        docs = []
        for i, ex in _render_rows(p.task, data, rows):
            length, depth = cells[i % len(cells)]
            if lengths[i] != length:
                raise RuntimeError(
                    f"needle grid row {i} has {lengths[i]} tokens, its cell says {length}: the grid's "
                    f"row order (row i is cell i mod #cells) no longer holds"
                )
            docs.append({"index": i, "length": length, "depth": depth, "prompt": ex.prompt, "answer": ex.answer})
        out[needle_subtask(L)] = docs
    return out


# -- task files --------------------------------------------------------------------------
def _task_yaml(p: _Probe, name: str, jsonl: Path, docs: list[dict[str, Any]], meta: dict[str, Any],
               alias: str | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"task": name}
    if alias:
        cfg["task_alias"] = alias
    cfg.update({
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(jsonl)}},
        "test_split": "test",
        "doc_to_text": "prompt",
    })
    if p.probe in CHOICES:
        cfg.update({
            "output_type": "multiple_choice",
            "doc_to_target": "label",
            "doc_to_choice": list(CHOICES[p.probe]),
            "target_delimiter": "",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        })
    else:
        longest = max((len(d["answer"]) for d in docs), default=1)
        cfg.update({
            "output_type": "generate_until",
            "doc_to_target": "answer",
            "generation_kwargs": {"until": ["\n"], "do_sample": False, "temperature": 0.0,
                                  "max_gen_toks": longest + _GEN_MARGIN},
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                             "ignore_case": False, "ignore_punctuation": False, "regexes_to_ignore": _STRIP}],
        })
    cfg["metadata"] = meta
    return cfg


class _Dumper(yaml.SafeDumper):
    """Strings holding a newline (the stop sequence) are written double-quoted: ``"\\n"``."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = '"' if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _write_yaml(path: Path, cfg: dict[str, Any]) -> None:
    text = yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=False,
                     width=1 << 16)
    path.write_text(text, encoding="utf-8", newline="\n")


def _write_jsonl(path: Path, docs: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=True, separators=(",", ":")) + "\n")


def _write_export(tmp: Path, final: Path, probes: list[_Probe], seed: int, n: int | None, key: str) -> None:
    for p in probes:
        record = {**p.record(seed), "export": key}
        per_task = _docs(p, seed, n)
        for name, docs in per_task.items():
            if not docs:
                raise RuntimeError(f"{name}: no documents to export")
            _write_jsonl(tmp / f"{name}.jsonl", docs)
            extra: dict[str, Any] = {"n_docs": len(docs)}
            alias = None
            if p.probe in CHOICES:
                extra["chance"] = 1.0 / len(CHOICES[p.probe])
            if p.probe == "needle":
                extra["length"] = docs[0]["length"]
                alias = f"length {docs[0]['length']}"
            meta = {"version": float(EXPORT_VERSION), "archbench": {**record, **extra}}
            _write_yaml(tmp / f"{name}.yaml", _task_yaml(p, name, final / f"{name}.jsonl", docs, meta, alias))
        if p.probe == "needle":
            group = {
                "group": p.task_name,
                "task": list(per_task),
                "aggregate_metric_list": [{"metric": "exact_match", "filter_list": ["none"],
                                           "aggregation": "mean", "weight_by_size": True}],
                "metadata": {"version": float(EXPORT_VERSION), "archbench": record},
            }
            _write_yaml(tmp / f"{p.task_name}.yaml", group)
    manifest = {"export_version": EXPORT_VERSION, "export": key, "seed": seed, "n": n,
                "tasks": {p.task_name: p.record(seed) for p in probes}}
    (tmp / "archbench_export.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n",
                                               encoding="utf-8", newline="\n")


def export_probe_tasks(names: Iterable[str] | None = None, cache_dir: str | Path | None = None, *,
                       seed: int = 0, n: int | None = None,
                       params: dict[str, dict] | None = None) -> Path:
    """Write the lm-eval tasks of the probes ``names`` (lm-eval task names, see
    :data:`PROBE_TASKS`, or probe names; default all seven) and return the directory to
    pass as ``TaskManager(include_path=...)``.

    Each probe is exported from its ``quick`` preset's test split (needle: its ``grid``
    split) at ``seed``; ``params[probe]`` overrides config fields and may name another
    ``preset`` or ``split``; ``n`` keeps the first ``n`` documents of each task (each needle
    length).  The directory is ``<cache_dir>/lm_eval_tasks/<hash of every setting>``
    (``cache_dir`` defaults to ``$ARCHBENCH_CACHE`` or ``~/.cache/archbench``); an existing
    export there is reused.  See the module docstring for output types and metrics.

    Raises :class:`UnknownProbeTaskError` (a ``ValueError``) for an unknown name, listing
    the close matches and every known name."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ProbeExportError(f"seed must be an integer; got {seed!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ProbeExportError(f"n (documents per task) must be a positive integer or None; got {n!r}")
    probes = _settings(names, params)
    key = _settings_hash(probes, seed, n)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = (root / "lm_eval_tasks").absolute()
    final = root / key
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        _write_export(tmp, final, probes, seed, n, key)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a concurrent export of the same settings: a real failure
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same export first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
