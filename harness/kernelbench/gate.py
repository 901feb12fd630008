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

**The comparison** (:func:`run_gate`): an entry fails when its ``gate_ratio`` exceeds
``baseline * (1 + max_slowdown)``, or when it now errors.  Failing entries are measured once
more (twice the rounds, each timing twice as long, the rounds spread over the suspects) and
fail only when the slowdown shows in both measurements (the smaller ratio is kept), so a busy
spell of the machine during the first measurement does not fail the build.  A device class
with no baseline passes with a note: ratios depend on the CPU/GPU model and the thread count,
and comparing against another machine's baseline would fail (or pass) for reasons that have
nothing to do with the change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from harness.errors import UserError
from harness.kernelbench.measure import BenchResult

BASELINE_FORMAT = "archbench-kernel-baseline/1"
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
    return float(entry.get("gate_ratio", entry["ratio"]))


def save_baseline(path: Path, results: list[BenchResult], dev_class: str, *, command: str | None = None) -> Path:
    """Merge the normalised times of ``results`` into ``path`` under ``dev_class`` (the SDPA
    baseline itself and failed entries are left out); returns the file written."""
    from harness import environment

    path = Path(path)
    file = baseline_path(path, dev_class)
    doc = _read_doc(file) if file.exists() else {"format": BASELINE_FORMAT, "device_classes": {}}
    block = doc["device_classes"].setdefault(dev_class, {"entries": {}})
    info = environment.describe("cpu")
    device = results[0].device_name if results else None
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
        entries[r.key] = {"gate_ratio": round(r.gate_ratio, 4), "ratio": round(r.ratio, 4),
                          "median_ms": round(r.median_ms, 4), "sdpa_ms": round(r.sdpa_ms, 4)}
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
class GateReport:
    threshold: float
    checked: list[GateFinding] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # measured, but not in the baseline
    remeasured: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[GateFinding]:
        return [f for f in self.checked if f.exceeds(self.threshold)]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def worst(self) -> GateFinding | None:
        ok = [f for f in self.checked if f.relative is not None]
        return max(ok, key=lambda f: f.relative) if ok else None


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
    """:func:`compare`, then measure the failing entries once more: an entry fails only if
    it fails again (its ratio is the smaller of the two measurements)."""
    report = compare(results, entries, threshold)
    failing = report.failures
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
    text = (f"gate: {len(report.checked)} kernels vs {file} ({dev_class}), limit +{100 * threshold:.0f}%"
            + (f"; worst {worst.label} at {worst.relative:.2f}x its baseline" if worst else ""))
    if report.missing:
        text += f"; {len(report.missing)} without a baseline entry (not checked)"
    if report.remeasured:
        text += f"; {len(report.remeasured)} measured twice"
    return text
