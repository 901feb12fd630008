"""Mutation score per module from a finished ``mutmut run`` (see README, "Mutation testing").

    python tests/mutation_report.py [--mutants mutants] [--readme README.md] [--survivors]

Reads mutmut's per-file verdicts (``mutants/<path>.meta``) and the equivalent mutants
listed in the README's "Mutation testing" section (lines ``- `NAME`: why``), and prints,
per module: mutants, killed (a test failed, or the tests timed out; the timeouts also on
their own), equivalent, survived, not run, and the score killed / (mutants - equivalent -
not run).  ``--survivors`` also
lists the survivors that are not marked equivalent.  Exits 1 if a mutant the README calls
equivalent was killed (then it was not equivalent: take it off the list).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

KILLED = {1, 3}  # a test failed (3: pytest's internal error also means the mutant broke something)
TIMEOUT = {-24, 24, 36, 152, 255}  # the tests ran past 5 x (normal time + 30 s): an endless loop
SURVIVED = {0}
NOT_RUN = {None, 2, 5, 33, 34}  # not checked, interrupted, no test reaches the function, skipped


def equivalent_names(readme: Path) -> dict[str, str]:
    """``{mutant: reason}`` from the README's mutation-testing section."""
    text = readme.read_text()
    start = text.find("## Mutation testing")
    if start < 0:
        return {}
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else None]
    return dict(re.findall(r"^- `([^`]+)`: (.+)$", section, flags=re.M))


def verdicts(mutants: Path) -> dict[str, dict[str, int | None]]:
    """``{module file: {mutant: exit code}}`` for every mutated file."""
    out = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            out[meta.relative_to(mutants).as_posix().removesuffix(".meta")] = codes
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mutants", type=Path, default=Path("mutants"))
    ap.add_argument("--readme", type=Path, default=Path("README.md"))
    ap.add_argument("--survivors", action="store_true", help="list survivors not marked equivalent")
    args = ap.parse_args(argv)
    if not args.mutants.is_dir():
        print(f"error: no {args.mutants}/ here; run `mutmut run` first", file=sys.stderr)
        return 2
    equivalent = equivalent_names(args.readme)
    rows, survivors, wrongly_equivalent = [], [], []
    total = {k: 0 for k in ("mutants", "killed", "timeout", "equivalent", "survived", "not_run")}
    for path, codes in verdicts(args.mutants).items():
        row = {k: 0 for k in total}
        for name, code in codes.items():
            row["mutants"] += 1
            if code in NOT_RUN:
                row["not_run"] += 1
            elif code in KILLED or code in TIMEOUT or code not in SURVIVED:
                row["killed"] += 1
                row["timeout"] += code in TIMEOUT
                if name in equivalent:
                    wrongly_equivalent.append(name)
            elif name in equivalent:
                row["equivalent"] += 1
            else:
                row["survived"] += 1
                survivors.append(name)
        rows.append((path, row))
        for k in total:
            total[k] += row[k]
    print(f"{'module':34} {'mutants':>7} {'killed':>6} {'(timeout)':>9} {'equiv':>5} {'surv':>5} {'not run':>7}"
          f" {'score':>6}")
    for path, row in rows + [("total", total)]:
        judged = row["mutants"] - row["equivalent"] - row["not_run"]
        score = f"{row['killed'] / judged:6.1%}" if judged else "     -"
        print(f"{path:34} {row['mutants']:7d} {row['killed']:6d} {row['timeout']:9d} {row['equivalent']:5d}"
              f" {row['survived']:5d}"
              f" {row['not_run']:7d} {score}")
    if args.survivors:
        print("\nsurvivors not marked equivalent:")
        for name in survivors:
            print(f"  {name}")
    if wrongly_equivalent:
        print("\nkilled, so not equivalent (take them off the README's list):", file=sys.stderr)
        for name in wrongly_equivalent:
            print(f"  {name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
