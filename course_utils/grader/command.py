"""The ``course grade`` subcommand: its options and what it prints.

Kept free of heavy imports so ``course --help`` stays fast; the grader is
imported when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]

EPILOG = """\
examples:
  course grade --demo                 grade the bundled sample submissions, print the table
  course grade --demo -s correct -s hostile-patches-numpy      only these samples of the demo
  course grade                        grade submitted/ in this repository (nbgrader layout)
  course grade path/to/course -a 01_numpy_backprop --workers 4 --force

Outputs (in the course directory): gradebook.db, autograded/, feedback/<student>/<assignment>/
*.html (hidden tests removed) and grades.csv (per-cell points, total, max, status, details).
Per-assignment limits go in the course's nbgrader_config.py, e.g.
  c.CourseGrade.per_assignment = {"06_cifar10": {"timeout": 1800, "memory_mb": 8192}}
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``course grade``'s options (one per GradeOptions field, and the demo's) to its subparser."""
    from course_utils.grader.config import add_flags

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    add_flags(p)
    p.add_argument("--details", action="store_true", help="print every status detail")
    p.add_argument("--demo", action="store_true",
                   help="grade the bundled sample submissions (correct, typical mistakes, hostile); "
                        "with -s, only those samples")
    p.add_argument("--demo-dir", type=Path, default=None,
                   help="where --demo lays out its course (default: a new temporary folder)")


def _print_report(report: object, details: bool) -> None:
    from course_utils.grader.report import GradeReport, format_table

    assert isinstance(report, GradeReport)
    print(format_table(report.results, details=details))
    graded = [r for r in report.results if not r.skipped]
    print(f"\n{len(graded)} graded, {len(report.results) - len(graded)} already graded (skipped; "
          f"--force re-grades) in {report.wall_s:.1f} s with {report.workers} worker(s)")
    print("sandbox: " + "; ".join(report.sandbox))
    print("mode: " + ("full (the notebooks' own settings)" if report.mode == "full" else
                      "FAST (COURSE_FAST=1 or --fast): CI's smaller settings, not grades to hand out"))
    for warning in report.warnings:
        print(f"warning: {warning}")
    print(f"CSV: {report.csv_path}")
    print(f"feedback: {report.course_dir / 'feedback'}/<student>/<assignment>/")


def run(args: argparse.Namespace) -> int:
    """Run ``course grade``; exit status 0 unless the demo disagrees with its answer key."""
    # nbformat's jsonschema imports rfc3987_syntax when it is installed, to check "iri" strings:
    # building that grammar is 1-2 s of every run's start, and no notebook schema has an IRI.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    if args.scheduler in (None, "", "local"):  # the LocalCluster's fork server imports while we do
        from course_utils.grader.cluster import start_fork_server

        start_fork_server()
    from course_utils.grader import demo, runner
    from course_utils.grader.config import options_from_args
    from course_utils.release import project_root

    if args.demo:
        assignments = args.assignments or list(demo.DEMO_ASSIGNMENTS)
        try:
            report, expected, problems = demo.run_demo(
                args.demo_dir, assignments, workers=args.workers, progress=args.progress,
                scheduler=args.scheduler, students=args.students)
        except demo.UnknownSample as err:
            print(f"course grade --demo: {err}", file=sys.stderr)
            return 2
        _print_report(report, args.details)
        if problems:
            print("\nNOT AS EXPECTED:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        print(f"all {len(expected)} sample submissions got exactly their expected scores "
              "and status")
        return 0
    report = runner.grade(options_from_args(args, project_root()))
    if not report.results:
        print(f"nothing to grade: no submitted/<student>/<assignment>/ folders in {report.course_dir}")
        return 0
    _print_report(report, args.details)
    return 0
