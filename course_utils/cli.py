"""The ``course`` command (also ``python -m course_utils``).

Subcommands:

* ``course start``    copy a released assignment into your own ``work/`` folder (students)
* ``course update``   say what a newer release changed; ``--apply`` brings it in, keeping your answers
* ``course sync``     keep each solution's ``.py`` and ``.ipynb`` in step, whichever was edited
* ``course release``  regenerate every student notebook in ``notebooks/`` with nbgrader
* ``course fetch``    download every data set (and weight file) into the cache
* ``course doctor``   print versions, device, data locations and extension status
* ``course grade``    autograde submissions with nbgrader: parallel, contained, with feedback
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence

from course_utils.grader import command as grade_command

# Modules that import torch, torchvision or jupytext are imported by the commands that
# use them, so `course --help` starts in a fraction of a second.

__all__ = ["FETCHERS", "build_parser", "main"]



def _plain(text: str) -> str:
    """Docstring text for a terminal: reST literals (``x``) and roles (:func:`x`) as plain words."""
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")

def _lazy(module: str, function: str) -> Callable[[], str]:
    """A fetcher that imports its module only when `course fetch` runs it."""

    def fetch() -> str:
        import importlib

        return getattr(importlib.import_module(module), function)()

    return fetch


# Extra things `course fetch` pre-downloads besides the data sets (e.g. weight
# files); modules that need them register a callable here: name -> fetch().
FETCHERS: dict[str, Callable[[], str]] = {
    # ImageNet ResNet-18 weights into the torch hub cache (notebook 10).
    "resnet18": _lazy("course_utils.transfer", "fetch_resnet18_weights"),
    # The offline CIFAR-8 backbone, trained once (a few minutes) into the course cache (notebook 10).
    "cifar8-backbone": _lazy("course_utils.transfer", "fetch_backbone"),
}


def _cmd_sync(args: argparse.Namespace) -> int:
    from course_utils import release

    if args.check:
        stale = release.stale_notebooks()
        for path in stale:
            print(f"out of step: {path} and its .py (run `course sync`)")
        return 1 if stale else 0
    prefer = {path: "source" for path in args.from_source} | {path: "notebook" for path in args.from_notebook}
    try:
        changes = release.sync(names=args.assignments or None, prefer=prefer)
    except release.SyncConflict as err:
        print(f"course sync: {err}", file=sys.stderr)
        return 1
    for path, what in changes:
        print(f"{path}: {what}")
    if not changes:
        which = ", ".join(args.assignments) if args.assignments else "every solution"
        print(f"{which}: .py and .ipynb already in step, nothing written")
    return 0


def _cmd_release(args: argparse.Namespace) -> int:
    from course_utils import release

    try:
        dest = release.release(args.assignments or None)
    except release.SyncConflict as err:
        print(f"course release: refused, nothing released.\n{err}", file=sys.stderr)
        return 1
    print(f"student notebooks written to {dest}")
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    from course_utils import workspace

    try:
        folder, new = workspace.start(args.assignment)
        pending = sum(len(found) for found in workspace.changes(args.assignment).values())
    except workspace.WorkspaceError as err:
        print(f"course start: {err}", file=sys.stderr)
        return 1
    notebooks = ", ".join(str(p) for p in sorted(folder.glob("*.ipynb")))
    if new:
        print(f"started {args.assignment}: open {notebooks} in JupyterLab (your copy; updates never overwrite it)")
    else:
        print(f"{args.assignment} is already started: {notebooks} (left as it is)")
        if pending:
            print(f"the release has {pending} change(s) since: `course update {args.assignment}` shows them")
    return 0


def _cmd_update(args: argparse.Namespace) -> int:
    from course_utils import workspace

    names = args.assignments or sorted(p.name for p in workspace.work_root().glob("*") if p.is_dir())
    if not names:
        print("nothing started yet: `course start <assignment>` copies one into work/")
        return 0
    status = 0
    for name in names:
        try:
            found = workspace.changes(name)
            if not any(found.values()):
                print(f"{name}: up to date")
                continue
            if not args.apply:
                for notebook, items in found.items():
                    print(f"{name}/{notebook}: {len(items)} change(s) in the release since you started:")
                    for change in items:
                        print(f"  {change}")
                print(f"  `course update {name} --apply` brings them in: your answers and your own cells "
                      "are kept, and your file is backed up first")
                continue
            for result in workspace.update(name):
                if result.changes:
                    print(f"{result.notebook}: {len(result.changes)} change(s) brought in, "
                          f"{len(result.kept_answers)} answer(s) kept; the previous file is {result.backup}")
                for orphan in result.orphans:
                    print(f"  {orphan}: that exercise was removed; your answer stays, as an ordinary cell")
        except workspace.WorkspaceError as err:
            print(f"course update: {err}", file=sys.stderr)
            status = 1
    return status


def _cmd_fetch(args: argparse.Namespace) -> int:
    from course_utils import data

    failures = 0
    for key, spec in data.DATASETS.items():
        if args.only and key not in args.only:
            continue
        try:
            print(f"{spec.name}: {data.resolve(spec) / spec.folder}")
        except (data.DataNotFoundError, data.CorruptDataError) as err:
            failures += 1
            print(f"{spec.name}: FAILED\n{err}", file=sys.stderr)
    for key, fetch in FETCHERS.items():
        if args.only and key not in args.only:
            continue
        try:
            print(f"{key}: {fetch()}")
        except Exception as err:  # noqa: BLE001 - report every failure, keep going
            failures += 1
            print(f"{key}: FAILED ({err})", file=sys.stderr)
    return 1 if failures else 0


def _labextensions() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # drop colour codes
    lines = text.splitlines()
    return "\n".join("    " + ln.strip() for ln in lines if "nbgrader" in ln) or "    nbgrader: NOT FOUND"


def _cmd_doctor(args: argparse.Namespace) -> int:
    import torch

    from course_utils import data
    from course_utils.runtime import fast_mode, get_device

    report = {
        "python": sys.version.split()[0],
        **{pkg: md.version(pkg) for pkg in ("torch", "torchvision", "nbgrader", "jupyterlab", "nbval")},
        "device": str(get_device()),
        "cuda devices": torch.cuda.device_count(),
        "mode": "fast (COURSE_FAST=1)" if fast_mode() else "full",
        "cache": str(data.cache_dir()),
    }
    report.update({f"data: {spec.name}": data.describe(spec) for spec in data.DATASETS.values()})
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for key, value in report.items():
        print(f"{key:>28}: {value}")
    print(f"{'nbgrader lab extensions':>28}:\n{_labextensions()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course", description=_plain(__doc__.split("\n\n")[0]))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("start", help="copy a released assignment into work/, your own folder")
    p.add_argument("assignment", help="assignment name, e.g. 01_numpy_backprop")
    p.set_defaults(func=_cmd_start)

    p = sub.add_parser("update", help="what a newer release changed in your started assignments")
    p.add_argument("assignments", nargs="*", help="assignment names (default: every started one)")
    p.add_argument("--apply", action="store_true",
                   help="bring the changes in, keeping your answers (the old file is backed up)")
    p.set_defaults(func=_cmd_update)

    p = sub.add_parser(
        "sync", help="bring each solution's .py and .ipynb in step, keeping the side that was edited"
    )
    p.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    p.add_argument("--check", action="store_true", help="only report pairs out of step (exit 1)")
    p.add_argument("--from-source", action="append", default=[], metavar="FILE",
                   help="when both sides of FILE's pair changed, keep the .py (repeatable)")
    p.add_argument("--from-notebook", action="append", default=[], metavar="FILE",
                   help="when both sides of FILE's pair changed, keep the .ipynb (repeatable)")
    p.set_defaults(func=_cmd_sync)

    p = sub.add_parser("release", help="regenerate the student notebooks with nbgrader")
    p.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    p.set_defaults(func=_cmd_release)

    p = sub.add_parser("fetch", help="pre-download data sets and weights for offline use")
    p.add_argument("only", nargs="*", help="restrict to these keys (default: everything)")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("doctor", help="versions, device, data locations, extensions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("grade", help="autograde submissions (nbgrader) in parallel, contained")
    grade_command.add_arguments(p)
    p.set_defaults(func=grade_command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
