"""The CI regression gate: committed baseline files, the comparison, and re-measurement.

**What it compares against.**  Committed baseline files, not stored rows: a fresh CI machine
has an empty store, and a baseline must come from a known-good tree on the same machine
class, which the store cannot tell apart from any other run.  A baseline file
(``benchmarks/baselines/<device class>.json``, written by ``--save-baseline``) holds, per
device class and per ``op/impl/mode/dtype/shape/causal`` key, the gate's normalised time
measured on a known-good tree: ``gate_ratio``, the median over rounds of the paired ratio
"entry's mean time per call / that of the SDPA timing right before it" (see
:mod:`harness.kernelbench.measure`), next to the reported ``ratio`` (fastest timing over
fastest SDPA timing) and both times, for people reading the file.  A file written before
``gate_ratio`` existed is compared on its ``ratio`` (:func:`baseline_ratio`); regenerate it.

**The comparison** (:func:`run_gate`, :class:`GateReport`): a kernel (``op/impl``) fails when
the geometric mean over its entries of ``gate_ratio / baseline`` exceeds ``1 + max_slowdown``,
when one entry alone exceeds ``1 + 2 max_slowdown``, or when an entry now errors.  Every entry of a failing kernel is
measured once more (twice the rounds, each timing twice as long, the rounds spread over the
suspects; on CPU in a fresh process, :mod:`harness.kernelbench.fresh`), each entry keeps the
smaller of its two ratios, and the kernel fails only when it still fails on those, so neither
a busy spell of the machine nor one process's offset fails the build.  A device class
with no baseline passes with a note: ratios depend on the CPU/GPU model and the thread count,
and comparing against another machine's baseline would fail (or pass) for reasons that have
nothing to do with the change.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from harness.errors import UserError
from harness.kernelbench.measure import BenchResult

BASELINE_FORMAT = "archbench-kernel-baseline/1"
MAX_SAMPLES = 5  # saves from the same tree whose median is the baseline
ENTRY_FACTOR = 2.0  # one entry alone fails past ENTRY_FACTOR x the limit
GATE_METRIC = ("gate_ratio: median over interleaved rounds of (mean ms per call / that of the SDPA timing right "
               "before it) at the same shape; ratio: median_ms / sdpa_median_ms, each the fastest of the rounds")


def parse_max_slowdown(text: str | float) -> float:
    """``"20%"`` -> 0.2; a bare number is a fraction (``0.2``)."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise UserError(f"--max-slowdown takes a percentage like 20% (or a fraction like 0.2), got {text!r}") from None
    if not s.endswith("%") and value >= 1:
        raise UserError(f"--max-slowdown {text!r}: write it as a percentage, e.g. {value:g}%")
    if value < 0 or value != value:
        raise UserError(f"--max-slowdown must be >= 0, got {text!r}")
    return value


# -- baseline files -------------------------------------------------------------------------------

def _read_doc(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"baseline {str(path)!r} is not readable JSON ({e}); write one with --save-baseline") from None
    if not isinstance(doc, dict) or doc.get("format") != BASELINE_FORMAT or not isinstance(
            doc.get("device_classes"), dict):
        raise UserError(f"{str(path)!r} is not an archbench kernel baseline (format {BASELINE_FORMAT}); "
                        f"write one with --save-baseline")
    return doc


def _is_dir_arg(path: Path) -> bool:
    """A directory, or a path that does not exist yet and is not named ``*.json``."""
    return path.is_dir() or (not path.exists() and path.suffix != ".json")


def baseline_path(path: Path, dev_class: str) -> Path:
    """A directory means ``<dir>/<device class>.json``."""
    return path / f"{dev_class}.json" if _is_dir_arg(path) else path


def load_baseline(path: Path, dev_class: str) -> tuple[dict[str, dict] | None, Path, str | None]:
    """The baseline entries for ``dev_class`` from ``path`` (a file or a directory of
    ``<device class>.json`` files).  Returns ``(entries, file, note)``: ``entries`` is ``None``
    with a note when this device class has no baseline (the gate then passes); a named file
    that does not exist, or is not a baseline, is a :class:`UserError`."""
    path = Path(path)
    file = baseline_path(path, dev_class)
    if _is_dir_arg(path) and not file.exists():
        return None, file, (f"no kernel baseline for device class {dev_class!r} in {path}/; gate skipped "
                            f"(save one with --save-baseline {file})")
    if not file.exists():
        raise UserError(f"baseline file {str(file)!r} does not exist; write one with --save-baseline")
    doc = _read_doc(file)
    block = doc["device_classes"].get(dev_class)
    if not block or not block.get("entries"):
        have = ", ".join(sorted(doc["device_classes"])) or "none"
        return None, file, (f"{file} has no baseline for device class {dev_class!r} (it has: {have}); gate skipped")
    return dict(block["entries"]), file, None


def baseline_ratio(entry: dict[str, Any]) -> float:
    """The normalised time a baseline entry holds for the gate: ``gate_ratio``, or ``ratio`` in
    a file written before ``gate_ratio`` existed."""
    return float(entry["gate_ratio"] if "gate_ratio" in entry else entry["ratio"])


def save_baseline(path: Path, results: list[BenchResult], dev_class: str, *, command: str | None = None) -> Path:
    """Merge the normalised times of ``results`` into ``path`` under ``dev_class`` (the SDPA
    baseline itself and failed entries are left out); returns the file written.

    An entry keeps the ``samples`` of the last :data:`MAX_SAMPLES` saves made from the same
    tree (git sha, torch version and command), and its ``gate_ratio`` is their median: each
    process has an offset of its own (up to ~20% for one entry on a shared 2-CPU machine,
    while the same process re-measures it within 2%), so a baseline from one process would
    carry that offset into every later comparison.  Saving from another tree starts afresh."""
    from harness import environment

    path = Path(path)
    file = baseline_path(path, dev_class)
    doc = _read_doc(file) if file.exists() else {"format": BASELINE_FORMAT, "device_classes": {}}
    block = doc["device_classes"].setdefault(dev_class, {"entries": {}})
    info = environment.describe("cpu")
    device = results[0].device_name if results else None
    same_tree = (block.get("git_sha") == info["git_sha"] and block.get("torch_version") == info["torch_version"]
                 and block.get("command", command) == command)
    previous = block.get("entries", {}) if same_tree else {}
    block.update({
        "device_name": device, "git_sha": info["git_sha"], "torch_version": info["torch_version"],
        "num_threads": torch.get_num_threads(), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metric": GATE_METRIC,
    })
    if command:
        block["command"] = command
    entries = block.setdefault("entries", {})
    for r in results:
        if r.is_baseline or r.status != "ok" or r.ratio is None:
            continue
        samples = [*previous.get(r.key, {}).get("samples", []), round(r.gate_ratio, 4)][-MAX_SAMPLES:]
        entries[r.key] = {"gate_ratio": round(statistics.median(samples), 4), "samples": samples,
                          "ratio": round(r.ratio, 4), "median_ms": round(r.median_ms, 4),
                          "sdpa_ms": round(r.sdpa_ms, 4)}
    block["entries"] = dict(sorted(entries.items()))
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return file


# -- comparing ------------------------------------------------------------------------------------

@dataclass
class GateFinding:
    key: str
    label: str
    baseline_ratio: float
    ratio: float | None
    status: str = "ok"
    error: str | None = None
    ratios: list[float] = field(default_factory=list)  # every measurement's ratio (re-measured ones too)

    def exceeds(self, threshold: float) -> bool:
        return self.status != "ok" or self.ratio is None or self.ratio > self.baseline_ratio * (1 + threshold)

    @property
    def relative(self) -> float | None:
        return None if self.ratio is None else self.ratio / self.baseline_ratio

    def message(self, threshold: float) -> str:
        if self.status != "ok" or self.ratio is None:
            return (f"{self.label}: now fails ({self.status}: {self.error}); baseline "
                    f"{self.baseline_ratio:.2f}x SDPA")
        seen = ""
        if len(self.ratios) > 1:
            seen = " (measured " + ", then ".join(f"{x:.2f}x" for x in self.ratios) + ")"
        return (f"{self.label}: {self.ratio:.2f}x SDPA vs baseline {self.baseline_ratio:.2f}x "
                f"({100 * (self.relative - 1):+.0f}%, limit +{100 * threshold:.0f}%){seen}")


@dataclass
class KernelVerdict:
    """One kernel (``op/impl``) over the grid: the geometric mean of its entries' time relative
    to their baselines."""

    name: str
    findings: list[GateFinding]

    @property
    def relative(self) -> float | None:
        rel = [f.relative for f in self.findings if f.relative is not None and f.status == "ok"]
        return math.exp(sum(math.log(x) for x in rel) / len(rel)) if rel else None

    def exceeds(self, threshold: float) -> bool:
        if any(f.status != "ok" or f.ratio is None for f in self.findings):
            return True
        if any(f.exceeds(ENTRY_FACTOR * threshold) for f in self.findings):
            return True
        return self.relative is not None and self.relative > 1 + threshold

    def message(self, threshold: float) -> str:
        rel = self.relative
        what = f"{rel:.2f}x its baseline" if rel is not None else "fails"
        return (f"{self.name}: {what} over {len(self.findings)} "
                f"entr{'y' if len(self.findings) == 1 else 'ies'} (geometric mean; limit +{100 * threshold:.0f}%, "
                f"one entry alone +{100 * ENTRY_FACTOR * threshold:.0f}%)")


@dataclass
class GateReport:
    """The verdict.  A kernel (``op/impl``) fails when the geometric mean over its entries of
    (its time / SDPA's) relative to the baseline exceeds ``1 + threshold``, when one entry alone
    exceeds ``1 + ENTRY_FACTOR x threshold``, or when an entry now errors.  Averaging a kernel's
    shapes and modes halves the per-entry noise of a four-entry grid, and a regression of the
    kernel shows in all of them; the looser per-entry limit still catches one shape or mode
    gone badly wrong."""

    threshold: float
    checked: list[GateFinding] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # measured, but not in the baseline
    remeasured: list[str] = field(default_factory=list)

    @property
    def kernels(self) -> list[KernelVerdict]:
        by: dict[str, list[GateFinding]] = {}
        for f in self.checked:
            by.setdefault("/".join(f.key.split("/")[:2]), []).append(f)
        return [KernelVerdict(name, fs) for name, fs in by.items()]

    @property
    def failing_kernels(self) -> list[KernelVerdict]:
        return [k for k in self.kernels if k.exceeds(self.threshold)]

    @property
    def failures(self) -> list[GateFinding]:
        """Every entry of every failing kernel (each one's line says how far it is off)."""
        return [f for k in self.failing_kernels for f in k.findings]

    @property
    def passed(self) -> bool:
        return not self.failing_kernels

    @property
    def worst(self) -> GateFinding | None:
        ok = [f for f in self.checked if f.relative is not None]
        return max(ok, key=lambda f: f.relative) if ok else None

    @property
    def worst_kernel(self) -> KernelVerdict | None:
        ks = [k for k in self.kernels if k.relative is not None]
        return max(ks, key=lambda k: k.relative) if ks else None


def compare(results: list[BenchResult], entries: dict[str, dict], threshold: float) -> GateReport:
    """Check every non-baseline result that has a baseline entry (pure: no timing)."""
    report = GateReport(threshold)
    for r in results:
        if r.is_baseline:
            continue
        base = entries.get(r.key)
        if base is None:
            report.missing.append(r.key)
            continue
        ratio = r.gate_ratio if r.status == "ok" else None
        report.checked.append(GateFinding(key=r.key, label=r.label, baseline_ratio=baseline_ratio(base),
                                          ratio=ratio, status=r.status, error=r.error,
                                          ratios=[ratio] if ratio is not None else []))
    return report


def run_gate(results: list[BenchResult], entries: dict[str, dict], threshold: float,
             remeasure: Callable[[list[BenchResult]], list[BenchResult]] | None = None) -> GateReport:
    """:func:`compare`, then measure every entry of a failing kernel once more: each entry keeps
    the smaller of its two ratios, and the kernel fails only if it still fails on those."""
    report = compare(results, entries, threshold)
    failing = report.failures  # every entry of a failing kernel: its verdict is over all of them
    if not failing or remeasure is None:
        return report
    by_key = {r.key: r for r in results}
    again = {r.key: r for r in remeasure([by_key[f.key] for f in failing])}
    for f in failing:
        r = again.get(f.key)
        report.remeasured.append(f.key)
        if r is None:
            continue
        if r.status != "ok" or r.gate_ratio is None:
            if f.status == "ok":  # worked before, fails now: keep the earlier measurement
                continue
            f.status, f.error = r.status, r.error
            continue
        f.ratios.append(r.gate_ratio)
        f.ratio = r.gate_ratio if f.ratio is None else min(f.ratio, r.gate_ratio)
        f.status, f.error = "ok", None
    return report


def summary(report: GateReport, file: Path, dev_class: str) -> str:
    """One line: how many kernels were checked against which file, the worst, and what was not checked."""
    threshold, worst = report.threshold, report.worst
    kernel = report.worst_kernel
    text = (f"gate: {len(report.checked)} kernels vs {file} ({dev_class}), limit +{100 * threshold:.0f}% per kernel "
            f"(geometric mean over its entries), +{100 * ENTRY_FACTOR * threshold:.0f}% per entry"
            + (f"; worst kernel {kernel.name} at {kernel.relative:.2f}x" if kernel else "")
            + (f"; worst entry {worst.label} at {worst.relative:.2f}x its baseline" if worst else ""))
    if report.missing:
        text += f"; {len(report.missing)} without a baseline entry (not checked)"
    if report.remeasured:
        text += f"; {len(report.remeasured)} measured twice"
    return text
