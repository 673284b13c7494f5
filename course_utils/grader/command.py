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
  course grade                        grade submitted/ in this repository (nbgrader layout)
  course grade path/to/course -a 01_numpy_backprop --workers 4 --force

Outputs (in the course directory): gradebook.db, autograded/, feedback/<student>/<assignment>/
*.html (hidden tests removed) and grades.csv (per-cell points, total, max, status, details).
Per-assignment limits go in the course's nbgrader_config.py, e.g.
  c.CourseGrade.per_assignment = {"06_cifar10": {"timeout": 1800, "memory_mb": 8192}}
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``course grade``'s options to its subparser."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("course_dir", nargs="?", type=Path, default=None,
                   help="course directory in nbgrader's layout (default: this repository)")
    p.add_argument("-a", "--assignment", action="append", dest="assignments", metavar="NAME",
                   help="grade only this assignment (repeatable)")
    p.add_argument("-s", "--student", action="append", dest="students", metavar="ID",
                   help="grade only this student (repeatable)")
    p.add_argument("-j", "--workers", type=int, default=None,
                   help="worker processes (default: the number of cores)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="the Dask cluster to grade on: a scheduler address (tcp://host:8786), or 'local' "
                        "for a LocalCluster of --workers processes (default: c.CourseGrade.scheduler, else "
                        "local)")
    p.add_argument("--force", action="store_true", help="re-grade submissions already graded")
    p.add_argument("--timeout", type=int, default=None, help="seconds per cell (overrides config)")
    p.add_argument("--memory-mb", type=int, default=None, help="memory cap per kernel, MiB")
    p.add_argument("--allow-network", action="store_true", help="let student code use the network")
    p.add_argument("--no-sandbox", action="store_true",
                   help="unlocked kernels: no namespaces, private root or cgroup (memory cap and "
                        "timeouts stay; the summary and CSV say so)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--full", dest="fast", action="store_false", default=None,
                      help="the notebooks' own settings (the default, unless COURSE_FAST=1)")
    mode.add_argument("--fast", dest="fast", action="store_true",
                      help="CI's smaller settings (what COURSE_FAST=1 gives): for testing, not for grades")
    p.add_argument("--csv", type=Path, default=None, help="CSV path (default: COURSE/grades.csv)")
    p.add_argument("--no-feedback", action="store_true", help="skip the HTML feedback")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--details", action="store_true", help="print every status detail")
    p.add_argument("--demo", action="store_true",
                   help="grade the bundled sample submissions (correct, typical mistakes, hostile)")
    p.add_argument("--demo-dir", type=Path, default=None,
                   help="where --demo lays out its course (default: a new temporary folder)")


def _print_report(report: object, details: bool) -> None:
    from course_utils.grader.runner import GradeReport, format_table

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
    from course_utils.grader import demo, runner
    from course_utils.release import project_root

    if args.demo:
        assignments = args.assignments or list(demo.DEMO_ASSIGNMENTS)
        report, expected, problems = demo.run_demo(
            args.demo_dir, assignments, workers=args.workers, progress=not args.no_progress,
            scheduler=args.scheduler)
        _print_report(report, args.details)
        if problems:
            print("\nNOT AS EXPECTED:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        print(f"all {len(expected)} sample submissions got exactly their expected scores "
              "and status")
        return 0
    options = runner.GradeOptions(
        course_dir=args.course_dir or project_root(), assignments=args.assignments,
        students=args.students, workers=args.workers, force=args.force, timeout=args.timeout,
        memory_mb=args.memory_mb, network=True if args.allow_network else None,
        sandbox=not args.no_sandbox, fast=args.fast, feedback=not args.no_feedback,
        csv_path=args.csv, progress=not args.no_progress, scheduler=args.scheduler)
    report = runner.grade(options)
    if not report.results:
        print(f"nothing to grade: no submitted/<student>/<assignment>/ folders in {report.course_dir}")
        return 0
    _print_report(report, args.details)
    return 0
