"""What ``course grade`` reports: one row per submission, the CSV and the score table."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["STATUS_ORDER", "GradeReport", "SubmissionResult", "format_table", "write_csv"]

# Status codes, in the order they are listed in the CSV's status column.
STATUS_ORDER = (
    "unknown-assignment", "missing-notebook", "misnamed-notebook", "malformed-notebook",
    "grader-error", "forged-messages", "kernel-died", "timeout", "memory", "tampered", "tamper-undone",
    "partial-credit", "edited-cells", "deleted-cells", "duplicate-cells", "suspicious", "needs-manual",
)


@dataclass
class SubmissionResult:
    """One row of the score table."""

    student: str
    assignment: str
    scores: dict[str, float] = field(default_factory=dict)
    max_scores: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    max_total: float = 0.0
    codes: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``ok`` or the status codes joined by ``+`` in :data:`STATUS_ORDER`."""
        codes = [c for c in STATUS_ORDER if c in self.codes]
        return "+".join(codes) if codes else "ok"


@dataclass
class GradeReport:
    """What a ``course grade`` run did: its rows, where it wrote them, how it ran."""

    results: list[SubmissionResult]
    csv_path: Path
    course_dir: Path
    wall_s: float
    workers: int
    sandbox: list[str]
    warnings: list[str] = field(default_factory=list)
    protections: str = "all"  # "all", or "off: " and the protections this host could not apply
    mode: str = "full"  # "full" (the notebooks' own settings) or "fast" (COURSE_FAST=1: for tests)
    run_id: str = ""  # in every kernel's environment (COURSE_GRADE_RUN) and cgroup name


def _fmt(value: float) -> str:
    return f"{value:g}"


def _columns(results: Sequence[SubmissionResult]) -> list[tuple[str, str, str]]:
    """(column header, assignment, cell) for every graded cell in the run."""
    seen: list[tuple[str, str]] = []
    for row in results:
        for cell in row.max_scores:
            if (row.assignment, cell) not in seen:
                seen.append((row.assignment, cell))
    counts: dict[str, int] = {}
    for _, cell in seen:
        counts[cell] = counts.get(cell, 0) + 1
    return [(cell if counts[cell] == 1 else f"{name}:{cell}", name, cell) for name, cell in seen]


def write_csv(results: Sequence[SubmissionResult], path: Path, protections: str = "all",
              mode: str = "full") -> Path:
    """student, assignment, one column per graded cell, total, max, status, details, protections, mode.

    ``protections`` says which of the locked kernel's protections were on for the run
    ("all", or "off: ..." naming those this host could not apply); ``mode`` whether the
    notebooks ran with their own settings ("full") or CI's smaller ones ("fast").
    """
    columns = _columns(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student", "assignment", *[c[0] for c in columns], "total", "max",
                         "status", "details", "protections", "mode"])
        for row in results:
            cells = [_fmt(row.scores[cell]) if name == row.assignment and cell in row.scores else ""
                     for _, name, cell in columns]
            writer.writerow([row.student, row.assignment, *cells, _fmt(row.total),
                             _fmt(row.max_total), row.status, " | ".join(row.details), protections, mode])
    os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    return path


def format_table(results: Sequence[SubmissionResult], *, details: bool = False) -> str:
    """A plain-text score table: one line per submission."""
    columns = _columns(results)
    header = ["student", "assignment", *[c[0] for c in columns], "total", "status"]
    lines = [header]
    for row in results:
        cells = [_fmt(row.scores[cell]) if name == row.assignment and cell in row.scores else "-"
                 for _, name, cell in columns]
        total = f"{_fmt(row.total)}/{_fmt(row.max_total)}" if row.max_scores else "-"
        lines.append([row.student, row.assignment, *cells, total, row.status])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    text = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    if details:
        for row in results:
            for detail in row.details:
                text.append(f"  {row.student}/{row.assignment}: {detail}")
    return "\n".join(text)
