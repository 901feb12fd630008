"""Run configs and sweep files.

A :class:`RunConfig` says everything that determines a run.  :func:`resolve` fills in
every default (task preset and knobs, the mixer's options) so that two spellings of the
same experiment get the same :func:`run_id`, the hash of the resolved config.  Beside it,
:func:`setting_id` (without seed and lr) and :func:`entry_id` (also without the task) say
which runs are seeds of one leaderboard cell and which cells make one leaderboard row
(:mod:`harness.identity`).
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from archbench.validation import format_validation_error
from harness.errors import UserError
from harness.identity import entry_id_of, run_id_of, setting_id_of
from models.config import ArchConfig
from tasks import resolve_task_params


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskSpec(_Strict):
    name: str = Field(description="registered task (see `archbench tasks`)")
    preset: str | None = Field(None, description="a named preset of the task, e.g. quick or paper")
    params: dict[str, Any] = Field(default_factory=dict, description="task knobs, over the preset")

    def resolved(self) -> "TaskSpec":
        return TaskSpec(name=self.name, preset=None, params=resolve_task_params(self.name, self.params, self.preset))

    @property
    def setting_label(self) -> str:
        """A short, stable label of the task setting: the knobs that differ from the task's
        defaults, data sizes left out (``mqar(num_pairs=8,vocab_size=256)``)."""
        from tasks import get_task_class

        cls = get_task_class(self.name).Config
        if self._defaults_ok():
            defaults = cls().model_dump(mode="json")
        else:  # a task with a required knob (text's source): the fields' own defaults
            defaults = {k: f.default for k, f in cls.model_fields.items()}
        skip = {"n_train", "n_val", "n_test"}
        knobs = ",".join(f"{k}={v}" for k, v in sorted(self.params.items())
                         if k not in skip and defaults.get(k, object()) != v)
        return f"{self.name}({knobs})" if knobs else self.name

    def _defaults_ok(self) -> bool:
        from pydantic import ValidationError

        from tasks import get_task_class

        try:
            get_task_class(self.name).Config()
            return True
        except ValidationError:
            return False


class OptimizerConfig(_Strict):
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = Field(1e-8, gt=0)
    warmup_steps: int = Field(50, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr / peak lr")
    grad_clip: float | None = Field(1.0, gt=0)

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"betas must lie in [0, 1), got {v}")
        return v


class TrainConfig(_Strict):
    steps: int | None = Field(1000, ge=1, description="optimizer steps (or give epochs)")
    epochs: float | None = Field(None, gt=0, description="passes over the training set, instead of steps")
    batch_size: int | Literal["full"] = Field(64, description="examples per step, or 'full' for full batch")
    eval_every: int = Field(100, ge=1, description="evaluate on val every N steps")
    eval_examples: int | None = Field(None, ge=1, description="cap on val examples per evaluation")
    early_stop: float | None = Field(None, gt=0, le=1, description="stop once val accuracy reaches this")

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("batch_size must be >= 1 or 'full'")
        return v

    @model_validator(mode="after")
    def _length(self) -> "TrainConfig":
        if self.epochs is not None and "steps" not in self.model_fields_set:
            return self.model_copy(update={"steps": None})
        if self.steps is None and self.epochs is None:
            raise ValueError("give train.steps or train.epochs")
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give train.steps or train.epochs, not both")
        return self


DEVICES = ("cpu", "cuda", "auto")


class RunConfig(_Strict):
    arch: ArchConfig = Field(default_factory=ArchConfig)
    task: TaskSpec
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="bfloat16 = autocast on CUDA")

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, v: Any) -> Any:
        if v in DEVICES:
            return v
        hint = ("; use cuda, which is the first GPU visible (choose it with CUDA_VISIBLE_DEVICES)"
                if isinstance(v, str) and v.startswith("cuda:") else "")
        raise ValueError(f"must be one of {', '.join(DEVICES)}, got {v!r}{hint}")

    def resolved(self) -> "RunConfig":
        return self.model_copy(update={"arch": self.arch.resolved(), "task": self.task.resolved()})


def parse_run_config(data: dict[str, Any], where: str = "config") -> RunConfig:
    """Validate a dict into a resolved RunConfig, or raise one :class:`UserError`."""
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise UserError(f"invalid {where}: {format_validation_error(e)}") from None
    check_device(cfg.device, where)
    check_kernels(cfg.arch.kernels, cfg.device, where)
    from harness.errors import user_error_types

    try:
        return cfg.resolved()
    except user_error_types() as e:
        raise UserError(f"invalid {where}: {e}") from None


def check_device(device: str, where: str = "config") -> None:
    """Refuse a device this machine does not have, before anything is written for the run."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"invalid {where}: device is cuda but CUDA is not available on this machine; "
                            f"use device cpu (`device: cpu` in a file, `--set device=cpu` for train), "
                            f"or auto to take a GPU only where there is one")


def check_kernels(arch_kernels: str | None, device: str, where: str = "config") -> None:
    """Refuse a kernel mode this machine cannot run: a bad ``$ARCHBENCH_KERNELS``, or ``triton``
    where nothing can run Triton (no CUDA device for the run and no ``TRITON_INTERPRET=1``)."""
    import torch

    from kernels.dispatch import ENV_VAR, HAS_TRITON, interpreter_on, kernel_mode

    try:
        mode = arch_kernels or kernel_mode()
    except ValueError as e:
        raise UserError(str(e)) from None
    if mode != "triton":
        return
    source = "arch.kernels=triton" if arch_kernels else f"{ENV_VAR}=triton"
    if not HAS_TRITON:
        raise UserError(f"invalid {where}: {source} but Triton is not installed; install triton, or use auto or torch")
    on_gpu = device in ("cuda", "auto") and torch.cuda.is_available()
    if not on_gpu and not interpreter_on():
        raise UserError(f"invalid {where}: {source} needs a CUDA device for the run, or TRITON_INTERPRET=1 to "
                        f"interpret the Triton kernels on the CPU (slow; for tests); or use auto or torch")


def run_id(cfg: RunConfig) -> str:
    """16 hex digits of the sha256 of the resolved config's canonical JSON."""
    return run_id_of(cfg.model_dump(mode="json"))


def setting_id(cfg: RunConfig) -> str:
    """The run id without seed and learning rate: runs of one setting are its seeds and lrs."""
    return setting_id_of(cfg.model_dump(mode="json"))


def entry_id(cfg: RunConfig) -> str:
    """The setting id without the task: one leaderboard row (see :mod:`harness.identity`)."""
    return entry_id_of(cfg.model_dump(mode="json"))


# -- sweeps -----------------------------------------------------------------------

class RunResources(_Strict):
    num_cpus: float = Field(1.0, gt=0, description="CPUs per run (also its torch threads)")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per run; a fraction packs several runs on one GPU")


class SweepFile(_Strict):
    name: str = Field(description="the sweep's name, stored with each run")
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict, description="a RunConfig, partly filled")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="axes: a dotted path into the config (arch.name, optimizer.lr, task.params.num_pairs, seed) -> values",
    )
    include: list[dict[str, Any]] = Field(
        default_factory=list,
        description="extra partial configs, each crossed with the grid (e.g. one entry per task)",
    )
    plugins: list[str] = Field(
        default_factory=list,
        description="modules or .py files (relative to the sweep file) that register mixers or tasks",
    )
    resources: "RunResources" = Field(default_factory=lambda: RunResources(),
                                      description="what each run asks of a Ray cluster (--executor ray); "
                                                  "--num-cpus / --num-gpus override")

    @field_validator("grid")
    @classmethod
    def _nonempty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid axis {key!r} must be a non-empty list")
        return v


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _set_path(d: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    keys = dotted.split(".")
    patch: dict[str, Any] = value
    for k in reversed(keys):
        patch = {k: patch}
    return _deep_merge(d, patch)


def parse_sets(sets: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` options as {key: value}; each value is read as YAML (``1e-3`` is a
    number, ``[1, 2]`` a list), falling back to the text itself."""
    out: dict[str, Any] = {}
    for item in sets or []:
        if "=" not in item:
            raise UserError(f"--set takes key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def build_run_config(config_file: str | Path | None = None, *, arch: str | None = None, task: str | None = None,
                     preset: str | None = None, sets: list[str] | None = None) -> RunConfig:
    """The one place a run config is built from a file plus overrides (``archbench train``).

    ``config_file`` (YAML, optional) is the start; ``arch``, ``task`` and ``preset`` set
    ``arch.name``, ``task.name`` and ``task.preset``; then each ``sets`` item
    (``"optimizer.lr=3e-4"``, a dotted path) in order.  Returns the validated, resolved
    config or raises one :class:`UserError`.
    """
    data: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise UserError(f"run config {str(path)!r} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise UserError(f"{path} must hold a mapping (a run config)")
    for dotted, value in (("arch.name", arch), ("task.name", task), ("task.preset", preset)):
        if value:
            data = _set_path(data, dotted, value)
    for k, v in parse_sets(sets).items():
        data = _set_path(data, k, v)
    if "task" not in data:
        raise UserError("say which task to train on: --task NAME (see `archbench tasks`) or a config file")
    return parse_run_config(data)


def expand_sweep(sweep: SweepFile) -> list[RunConfig]:
    """The grid's runs in a deterministic order (include entries outermost, then axes as written)."""
    includes = sweep.include or [{}]
    axes = list(sweep.grid.items())
    runs: list[RunConfig] = []
    seen: set[str] = set()
    for inc in includes:
        for values in itertools.product(*(vals for _, vals in axes)):
            data = _deep_merge(sweep.base, inc)
            for (path, _), value in zip(axes, values):
                data = _set_path(data, path, value)
            where = f"run {len(runs) + 1} of sweep {sweep.name!r} ({', '.join(f'{p}={v}' for (p, _), v in zip(axes, values))})"
            cfg = parse_run_config(data, where)
            rid = run_id(cfg)
            if rid not in seen:
                seen.add(rid)
                runs.append(cfg)
    return runs


def load_sweep(path: str | Path) -> SweepFile:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping with keys name, base, grid (see README.md)")
    data.setdefault("name", path.stem)
    try:
        return SweepFile.model_validate(data)
    except ValidationError as e:
        raise UserError(f"invalid sweep file {path}: {format_validation_error(e)}") from None


def suite_path(name: str) -> Path:
    """A built-in suite shipped in ``harness/suites``."""
    p = Path(__file__).parent / "suites" / f"{name}.yaml"
    if not p.is_file():
        known = sorted(x.stem for x in p.parent.glob("*.yaml"))
        raise UserError(f"unknown suite {name!r}; built-in suites: {', '.join(known)}")
    return p
