"""Print the size of each notebook's catalogue of mistakes and correct alternatives.

    python benchmarks/catalogue.py

Per notebook: answer cells, mistakes that replace each answer cell (and how many of them
promise the words their self-check or feedback shows: ``says``), and correct alternatives
per answer cell. Goal (issue 11): at least 3 named mistakes and 2 alternatives per answer
cell. Whether the promises hold is what ``tests/grading/test_roundtrip.py`` checks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course_utils.grader.sample import solution_code  # noqa: E402
from course_utils.release import assignments, project_root  # noqa: E402
from tests.grading.conftest import load_alternatives, load_mistakes  # noqa: E402


def main() -> int:
    header = (f"{'notebook':<22} {'answers':>7} {'mistakes':>8} {'named':>6} {'alts':>5}  "
              "thin cells (<3 named or <2 alternatives)")
    print(header)
    print("-" * len(header))
    totals = [0, 0, 0, 0]
    for name in assignments():
        nb = nbformat.read(project_root() / "solutions" / name / f"{name}.ipynb", as_version=4)
        cells = list(solution_code(nb))
        mistakes, alternatives = load_mistakes(name), load_alternatives(name)
        per_cell = {c: [m for m in mistakes.values() if c in m["replace"]] for c in cells}
        named = {c: [m for m in ms if m.get("says")] for c, ms in per_cell.items()}
        alts = {c: [a for a in alternatives.values() if c in a["replace"]] for c in cells}
        thin = [c for c in cells if len(named[c]) < 3 or len(alts[c]) < 2]
        row = [len(cells), *(sum(map(len, table.values())) for table in (per_cell, named, alts))]
        totals = [t + r for t, r in zip(totals, row, strict=True)]
        print(f"{name:<22} {row[0]:>7} {row[1]:>8} {row[2]:>6} {row[3]:>5}  {', '.join(thin)}")
    print(f"{'total':<22} {totals[0]:>7} {totals[1]:>8} {totals[2]:>6} {totals[3]:>5}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
