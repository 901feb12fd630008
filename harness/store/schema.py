"""The results schema (SQLAlchemy 2.x ORM). Changes go through Alembic migrations."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


RUN_STATUSES = ("queued", "running", "done", "failed", "diverged", "interrupted")
FINISHED = ("done", "failed", "diverged")
"""Statuses that are results: the leaderboard scores failed and diverged runs as no-skill."""


class Environment(Base):
    """Where numbers were produced: one row per distinct (versions, device, git sha)."""

    __tablename__ = "environments"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # hash of the fields below
    git_sha: Mapped[str | None] = mapped_column(String(40))
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    archbench_version: Mapped[str] = mapped_column(String(32))
    python_version: Mapped[str] = mapped_column(String(32))
    torch_version: Mapped[str] = mapped_column(String(64))
    triton_version: Mapped[str | None] = mapped_column(String(32))
    platform: Mapped[str] = mapped_column(String(128))
    device: Mapped[str] = mapped_column(String(16))
    cpu_name: Mapped[str | None] = mapped_column(String(128))
    gpu_name: Mapped[str | None] = mapped_column(String(128))
    num_threads: Mapped[int | None] = mapped_column(Integer)
    kernels: Mapped[str | None] = mapped_column(String(16))  # the kernel mode asked for: auto, torch, triton (0007)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # hash of the resolved config
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    arch: Mapped[str] = mapped_column(String(64), index=True)
    arch_label: Mapped[str] = mapped_column(String(160))
    size: Mapped[str] = mapped_column(String(32))
    entry_id: Mapped[str | None] = mapped_column(String(16), index=True)  # config minus seed, lr, task
    setting_id: Mapped[str | None] = mapped_column(String(16), index=True)  # config minus seed, lr
    task_id: Mapped[str | None] = mapped_column(String(16))  # the task config alone
    d_model: Mapped[int | None] = mapped_column(Integer)
    n_layers: Mapped[int | None] = mapped_column(Integer)
    n_heads: Mapped[int | None] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(64), index=True)
    task_setting: Mapped[str] = mapped_column(String(400))
    lr: Mapped[float] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(Integer)
    sweep: Mapped[str | None] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    n_params: Mapped[int | None] = mapped_column(Integer)
    metric: Mapped[str | None] = mapped_column(String(64))  # the task's headline metric
    val_score: Mapped[float | None] = mapped_column(Float)  # headline on the val split
    test_score: Mapped[float | None] = mapped_column(Float)  # headline on the test split
    chance: Mapped[float | None] = mapped_column(Float)  # headline metric's chance level
    floor: Mapped[float | None] = mapped_column(Float)  # strongest no-skill score on test (>= chance)
    floor_strategy: Mapped[str | None] = mapped_column(String(64))  # which strategy scores the floor
    step: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)  # the owner's last sign of life
    claim_token: Mapped[str | None] = mapped_column(String(64))  # the executor task that owns it (retries share it)
    attempt_log: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # earlier attempts and how each ended
    environment_id: Mapped[str | None] = mapped_column(ForeignKey("environments.id"))
    kernel_paths: Mapped[dict[str, str] | None] = mapped_column(JSON)  # op -> the path it ran: triton, torch (0007)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)


class Metric(Base):
    """A number about a run: a learning-curve point (``final=False``) or a final score."""

    __tablename__ = "metrics"
    __table_args__ = (
        UniqueConstraint("run_id", "final", "split", "name", "step", name="uq_metric"),
        Index("ix_metrics_run_final", "run_id", "final"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    split: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(Float)
    step: Mapped[int] = mapped_column(Integer)
    final: Mapped[bool] = mapped_column(Boolean, default=False)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Evaluation(Base):
    """A score from ``archbench eval``: a checkpoint on a task setting or a data file."""

    __tablename__ = "evaluations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    checkpoint_sha256: Mapped[str] = mapped_column(String(64), index=True)
    checkpoint_path: Mapped[str] = mapped_column(String(1024))
    run_id: Mapped[str | None] = mapped_column(String(16), index=True)
    task: Mapped[str] = mapped_column(String(64))
    task_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    data_file: Mapped[str | None] = mapped_column(String(1024))
    data_sha256: Mapped[str | None] = mapped_column(String(64))  # of the data file (a dataset id: NULL)
    split: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(Float)
    n_examples: Mapped[int] = mapped_column(Integer)
    environment_id: Mapped[str | None] = mapped_column(ForeignKey("environments.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class BenchmarkScore(Base):
    """An lm-eval score of a checkpoint (``archbench eval CHECKPOINT --lm-tasks``): one metric
    of one task, with its standard error and what produced it."""

    __tablename__ = "benchmark_scores"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(1024), index=True)  # what was asked for: a path or hf:PATH
    model_kind: Mapped[str] = mapped_column(String(16))  # archbench | hf
    model_sha256: Mapped[str | None] = mapped_column(String(64), index=True)  # of the weights (hub ids: NULL)
    label: Mapped[str] = mapped_column(String(256))  # how the model is shown (arch label, directory name)
    run_id: Mapped[str | None] = mapped_column(String(16), index=True)  # the archbench run that trained it
    benchmark: Mapped[str] = mapped_column(String(128), index=True)  # the lm-eval task (or group)
    group: Mapped[str | None] = mapped_column(String(128))  # the group it ran in; the group's row stands for it
    metric: Mapped[str] = mapped_column(String(128))
    filter: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    stderr: Mapped[float | None] = mapped_column(Float)  # lm-eval's "N/A": NULL
    higher_is_better: Mapped[bool | None] = mapped_column(Boolean)
    n_samples: Mapped[int | None] = mapped_column(Integer)  # documents scored
    num_fewshot: Mapped[int | None] = mapped_column(Integer)
    limit: Mapped[float | None] = mapped_column(Float)  # lm-eval's --limit (NULL: every document)
    task_version: Mapped[str | None] = mapped_column(String(32))
    lm_eval_version: Mapped[str] = mapped_column(String(32))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)  # model args, batch size, device, task config
    environment_id: Mapped[str | None] = mapped_column(ForeignKey("environments.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class KernelBenchmark(Base):
    __tablename__ = "kernel_benchmarks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    op: Mapped[str] = mapped_column(String(64), index=True)
    impl: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16))
    dtype: Mapped[str] = mapped_column(String(16))
    batch: Mapped[int] = mapped_column(Integer)
    seq_len: Mapped[int] = mapped_column(Integer)
    heads: Mapped[int] = mapped_column(Integer)
    head_dim: Mapped[int] = mapped_column(Integer)
    causal: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    median_ms: Mapped[float | None] = mapped_column(Float)
    p20_ms: Mapped[float | None] = mapped_column(Float)
    p80_ms: Mapped[float | None] = mapped_column(Float)
    tokens_per_s: Mapped[float | None] = mapped_column(Float)
    tflops: Mapped[float | None] = mapped_column(Float)
    peak_fraction: Mapped[float | None] = mapped_column(Float)
    peak_mem_bytes: Mapped[int | None] = mapped_column(BigInteger)  # past 2 GiB: 64-bit (migration 0006)
    device_name: Mapped[str] = mapped_column(String(128))
    git_sha: Mapped[str | None] = mapped_column(String(40))
    environment_id: Mapped[str | None] = mapped_column(ForeignKey("environments.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ProbeBenchmark(Base):
    """Generation speed of a probe (``archbench bench-probes``)."""

    __tablename__ = "probe_benchmarks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(64), index=True)
    preset: Mapped[str] = mapped_column(String(64))
    tokens: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    tokens_per_s: Mapped[float] = mapped_column(Float)
    environment_id: Mapped[str | None] = mapped_column(ForeignKey("environments.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
