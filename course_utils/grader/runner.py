"""``course grade``: autograde a course's submissions with nbgrader, in parallel, contained.

This module schedules a run (plan, triage, dispatch, report); the course folder
(:mod:`~course_utils.grader.course`), the options (:mod:`~course_utils.grader.config`),
what is known of an assignment (:mod:`~course_utils.grader.assignment`), the gradebook
(:mod:`~course_utils.grader.gradebook`) and the rows (:mod:`~course_utils.grader.report`)
each have their own module.

The course directory uses nbgrader's layout and configuration
(``nbgrader_config.py``): ``submitted/<student>/<assignment>/<notebook>.ipynb``
in, and out

* the nbgrader gradebook (``gradebook.db``), with every submission's grades;
* ``autograded/<student>/<assignment>/`` (nbgrader's executed notebooks) and
  ``feedback/<student>/<assignment>/<notebook>.html`` (without hidden tests);
* a CSV (default ``grades.csv``): student, assignment, points per graded
  cell, total, max, status, details.

How it runs (see :func:`grade`):

1. Assignments missing from the gradebook (or whose source changed) are
   generated into it with nbgrader's ``GenerateAssignment`` (the release copy
   goes to a temporary folder: ``course grade`` never rewrites the release).
2. Every submission is inspected without running it
   (:mod:`course_utils.grader.integrity`): unknown assignments, missing,
   misnamed and malformed notebooks become status rows with zero points, edited
   or deleted locked cells and suspicious code are noted.
3. Submissions go to a Dask cluster, one task each, the slowest of the last run first
   (:mod:`course_utils.grader.cluster`): a ``LocalCluster`` sized to the machine, or the
   cluster at ``scheduler``. Each worker (:mod:`course_utils.grader.worker`) has its own
   course directory and gradebook copy, uses the run's kernel fork server
   (:mod:`course_utils.grader.zygote`), and runs nbgrader's ``Autograde`` converter
   in-process with :class:`~course_utils.grader.execute.GuardedExecute` (nbgrader has no
   parallel autograde: its issue 174). As each submission finishes, the client merges its
   grades into the course gradebook with nbgrader's API; at the end each worker runs
   nbgrader's ``GenerateFeedback`` once over what it graded.
4. A re-run skips submissions already graded from the same files unless
   ``force``; the CSV still lists them, with their earlier status.

Kernels run one BLAS thread each (the workers already use the cores), in the
notebooks' full mode unless ``fast=True`` or ``COURSE_FAST=1`` (the tests' switch),
locked down (:mod:`course_utils.grader.sandbox`); graded cells run in the judge
(:mod:`course_utils.grader.judge`).

Per-assignment limits come from the course's ``nbgrader_config.py``::

    c.CourseGrade.timeout = 600            # seconds per cell (default: Execute.timeout)
    c.CourseGrade.memory_mb = 4096         # per kernel
    c.CourseGrade.per_assignment = {"06_cifar10": {"timeout": 1800, "memory_mb": 8192}}
    c.CourseGrade.run_trailing_cells = False  # the cells after the last graded cell (the default)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from course_utils.grader import integrity
from course_utils.grader.assignment import AssignmentInfo, assignment_info, inspect, submission_mtime
from course_utils.grader.config import CourseGrade, GradeOptions, course_protection, fast_mode, setting
from course_utils.grader.course import STATE, Course, open_course, read_json, state_file, write_json
from course_utils.grader.gradebook import generate, merge, read_row
from course_utils.grader.guard import Protection
from course_utils.grader.report import GradeReport, SubmissionResult, write_csv
from course_utils.grader.sandbox import SandboxSpec
from course_utils.grader.worker import WorkerSettings

__all__ = ["Task", "grade"]

# One task: a student and the (assignment, notebooks to grade) pairs a worker grades for them.
Task = tuple[str, list[tuple[str, list[str]]]]


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _prefetch_data(course: Course, names: Iterable[str]) -> None:
    """Resolve the data sets the assignments mention, before kernels lose write access."""
    try:
        from course_utils import data
    except Exception:  # noqa: BLE001 - torchvision missing: nothing to prefetch
        return
    text = " ".join(p.read_text(errors="replace") for n in names
                    for p in (course.source / n).glob("*.ipynb"))
    for key, spec in data.DATASETS.items():
        if f"{key}(" in text or f"data.{key}" in text:
            try:
                data.resolve(spec, download=False)
            except Exception:  # noqa: BLE001 - the notebook will report it where it matters
                pass


def _preload(assignments: Iterable[AssignmentInfo], protection: Protection) -> list[str]:
    """The course's protected modules, and those the setup cells import (``from a import b`` adds
    ``a.b`` when it is a module): loaded, and recorded by the guard, before any student code runs."""
    import importlib.util

    modules: list[str] = protection.course_modules()
    for info in assignments:
        for _, module, attr in info.bindings:
            candidates = [module]
            if attr:
                try:
                    if importlib.util.find_spec(f"{module}.{attr}") is not None:
                        candidates.append(f"{module}.{attr}")
                except (ImportError, ValueError):
                    pass
            modules += [c for c in candidates if c not in modules]
    return modules


def _environments(options: GradeOptions, workers: int) -> tuple[dict[str, str], dict[str, str]]:
    # One BLAS/OpenMP thread per kernel (workers already use the cores): OpenBLAS threads
    # spin while they wait, and on a busy machine two of them can make a NumPy loop 30x
    # slower. An explicit OMP_NUM_THREADS in the environment wins.
    threads = os.environ.get("OMP_NUM_THREADS") or "1"
    package_root = str(Path(__file__).resolve().parents[2])
    zygote_env = dict(os.environ)
    zygote_env.update({
        "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads, "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "COURSE_FAST": "1" if fast_mode(options) else "0",
        "PYTHONPATH": os.pathsep.join(p for p in [package_root, os.environ.get("PYTHONPATH", "")] if p),
    })
    kernel_env = {k: zygote_env[k] for k in ("PYTHONHASHSEED", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                             "OPENBLAS_NUM_THREADS", "MPLBACKEND", "COURSE_FAST",
                                             "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    kernel_env["NBGRADER_EXECUTION"] = "autograde"  # as `nbgrader autograde` sets it (its FAQ)
    return zygote_env, kernel_env


def _describe_sandbox(spec: SandboxSpec, missing: list[str]) -> tuple[list[str], str]:
    """The run summary's lines about containment, and the CSV's ``protections`` value."""
    from course_utils.grader.sandbox import LAYERS

    memory = f"memory cap per kernel process: {spec.memory_mb} MiB" if spec.memory_mb else "no memory cap"
    off = list(missing)
    if not spec.filesystem:
        off = [LAYERS[k] for k in ("user", "pid", "filesystem", "cgroup")]
    if not spec.network:
        off.append(f"{LAYERS['network']} (network allowed)")
    if not off:
        return [f"locked kernels: {', '.join(LAYERS.values())}", memory], "all"
    return [f"PROTECTIONS OFF: {'; '.join(off)}", memory], "off: " + "; ".join(off)


def grade(options: GradeOptions) -> GradeReport:
    """Grade the course's submissions; see the module docstring.

    The LocalCluster's workers are new processes that import the caller's main module (as
    with any multiprocessing start method but fork): a script that calls this needs the
    usual ``if __name__ == "__main__":`` guard. ``course grade`` and notebooks have it.
    """
    from filelock import FileLock

    started = time.perf_counter()
    course = open_course(Path(options.course_dir))
    limits = CourseGrade(config=course.config)
    from course_utils.grader import dataview

    for entries in limits.withheld.values():
        dataview.validate(entries)  # a typo in the config stops the run before anything is graded
    if (setting(options, limits, "scheduler") or "local") == "local":
        from course_utils.grader.cluster import start_fork_server

        start_fork_server()  # its imports run while this process plans the run
    (course.autograded / STATE).mkdir(parents=True, exist_ok=True)
    with FileLock(str(course.autograded / STATE / "lock")):
        return _grade_locked(course, limits, options, started)


def _plan(course: Course, options: GradeOptions) -> list[tuple[str, str]]:
    """Every (student, assignment folder) of ``submitted/`` the options select."""
    pairs = []
    if course.submitted.is_dir():
        for student_dir in sorted(p for p in course.submitted.iterdir() if p.is_dir()):
            if options.students and student_dir.name not in options.students:
                continue
            for folder in sorted(p for p in student_dir.iterdir() if p.is_dir()):
                if options.assignments and folder.name not in options.assignments:
                    continue
                pairs.append((student_dir.name, folder.name))
    return pairs


def _assignments(course: Course, limits: CourseGrade, options: GradeOptions,
                 pairs: list[tuple[str, str]]) -> dict[str, AssignmentInfo]:
    """The assignments the submissions name that the course has, generated into its gradebook first."""
    from nbgrader.api import Gradebook, MissingEntry

    known = sorted({name for _, name in pairs if (course.source / name).is_dir()}
                   | set(options.assignments or []) & {p.name for p in course.source.glob("*")})
    generate(course.root, known)
    found = []
    with Gradebook(course.db_url) as gb:
        for name in known:
            try:
                gb.find_assignment(name)
            except MissingEntry:
                continue
            found.append(name)
    return {name: assignment_info(course, name, limits, options) for name in found}


@dataclass
class _Run:
    """One run's bookkeeping: the rows so far, the notes from inspection, the status file."""

    course: Course
    infos: dict[str, AssignmentInfo]
    statuses: dict[str, Any]
    protection: Protection  # the course's protected modules (c.CourseGrade.protected_*)
    rows: dict[tuple[str, str], SubmissionResult] = field(default_factory=dict)
    notes: dict[tuple[str, str], tuple[list[str], list[str]]] = field(default_factory=dict)

    def finish(self, result: dict[str, Any]) -> None:
        """Record a merged result: its row (codes from inspection and grading) and its status entry."""
        student, name = result["student"], result["assignment"]
        row = read_row(self.course, student, self.infos.get(name), name)
        codes, details = self.notes.get((student, name), ([], []))
        row.codes = list(dict.fromkeys([*codes, *result.get("codes", []), *row.codes]))
        row.details = [*details, *result.get("details", [])]
        row.seconds = float(result.get("seconds", 0.0))
        row.timings = dict(result.get("timings", {}))
        self.statuses[f"{student}/{name}"].update(
            {"codes": row.codes, "details": row.details, "seconds": row.seconds,
             "timings": {k: v for k, v in row.timings.items() if not k.startswith("cell:")},
             "cells": {k[5:]: v for k, v in row.timings.items() if k.startswith("cell:")}})
        self.rows[(student, name)] = row


def _triage(run: _Run, pairs: list[tuple[str, str]], options: GradeOptions) -> list[Task]:
    """Rows for what needs no kernel (unknown, unreadable, already graded); tasks for the rest."""
    course = run.course
    tasks: list[Task] = []
    for student, name in pairs:
        key = f"{student}/{name}"
        folder = course.submitted / student / name
        info = run.infos.get(name)
        if info is None:
            run.rows[(student, name)] = SubmissionResult(
                student=student, assignment=name, codes=["unknown-assignment"],
                details=[f"no assignment named {name!r} in the course"])
            continue
        mtime = submission_mtime(folder)
        previous = run.statuses.get(key)
        done = (course.autograded / student / name).is_dir()
        # Done: graded from these files and merged ("seconds" is written with the merge), so a
        # run stopped midway (client, scheduler or machine) picks up exactly where it stopped.
        if not options.force and previous and previous.get("mtime") == mtime and "seconds" in previous and done:
            row = read_row(course, student, info, name)
            row.codes = [c for c in previous["codes"] if c != "needs-manual"] + row.codes
            row.details, row.seconds, row.skipped = previous["details"], previous["seconds"], True
            run.rows[(student, name)] = row
            continue
        try:
            found = inspect(folder, info, run.protection)
        except Exception as err:  # noqa: BLE001 - one submission never stops the run
            found = integrity.Inspection()
            found.add("grader-error", f"the grader could not inspect it ({type(err).__name__}: {err})"[:300])
        run.notes[(student, name)] = (found.codes, found.details)
        run.statuses[key] = {"mtime": mtime}
        if found.graded:
            tasks.append((student, [(name, found.graded)]))
        else:
            merge(course, {"student": student, "assignment": name, "grades": None})
            run.finish({"student": student, "assignment": name, "codes": [], "details": [], "seconds": 0.0})
    # Longest first by the last run's time: the cluster's queue then keeps every worker busy to the end.
    last = {key: float(v.get("seconds") or 0.0) for key, v in read_json(state_file(course, "status.json")).items()}
    tasks.sort(key=lambda t: (-last.get(f"{t[0]}/{t[1][0][0]}", 0.0), t[1][0][0], t[0]))
    return tasks


def _sandbox(limits: CourseGrade, options: GradeOptions) -> tuple[SandboxSpec, list[str], str]:
    """The kernels' sandbox, the run summary's lines about it and the CSV's ``protections``."""
    from course_utils.grader import sandbox

    spec = SandboxSpec(network=not setting(options, limits, "network"), filesystem=options.sandbox,
                       memory_mb=0, max_file_mb=2048, disk_mb=limits.disk_mb, max_processes=limits.max_processes)
    if not options.sandbox:
        spec.network = False
    missing = sandbox.probe(SandboxSpec(network=spec.network, filesystem=spec.filesystem,
                                        memory_mb=max(limits.memory_mb, 256), max_file_mb=0))
    lines, protections = _describe_sandbox(
        SandboxSpec(**{**asdict(spec), "memory_mb": setting(options, limits, "memory_mb")}), missing)
    return spec, lines, protections


def _dispatch(run: _Run, tasks: list[Task], limits: CourseGrade, options: GradeOptions, workers: int,
              spec: SandboxSpec) -> tuple[str, list[str]]:
    """Grade ``tasks`` on the Dask cluster, merging each result as it arrives; the run id and problems."""
    from course_utils.grader import kernel
    from course_utils.grader.cluster import DaskPool

    course = run.course
    _prefetch_data(course, {items[0][0] for _, items in tasks})
    zygote_env, kernel_env = _environments(options, workers)
    workdir = Path(tempfile.mkdtemp(prefix="course-grade-"))
    kernel_env["COURSE_GRADE_RUN"] = workdir.name  # names this run's kernels and their cgroups
    protection = run.protection
    preload = _preload(run.infos.values(), protection)
    # One kernel fork server for all workers, started first: its imports run while the
    # cluster's workers start.
    rules = {"packages": list(protection.packages), "modules": list(protection.modules)}
    shared = kernel.Zygote(workdir / "zygote", preload, zygote_env, listen=str(workdir / "zygote" / "server.sock"),
                           protection=rules)
    settings = WorkerSettings(
        course=course, assignments=run.infos, workdir=workdir, sandbox=spec, kernel_env=kernel_env,
        zygote_env=zygote_env, preload=preload, kill_grace=setting(options, limits, "kill_grace"),
        feedback=options.feedback, ipc=spec.network or spec.filesystem, zygote_socket=shared.listen,
        protection=rules)
    bar = None
    try:
        pool = DaskPool(workers, settings, setting(options, limits, "scheduler") or "local")
        bar = _progress(len(tasks), options.progress)

        def on_result(result: dict[str, Any]) -> None:
            merge(course, result)
            run.finish(result)
            write_json(state_file(course, "status.json"), run.statuses)
            bar.update(1)

        pool.run(tasks, on_result)
        return workdir.name, pool.problems
    finally:
        if bar is not None:
            bar.close()
        shared.close()
        if not os.environ.get("COURSE_GRADE_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)


def _grade_locked(course: Course, limits: CourseGrade, options: GradeOptions, started: float) -> GradeReport:
    pairs = _plan(course, options)
    run = _Run(course, _assignments(course, limits, options, pairs), read_json(state_file(course, "status.json")),
               course_protection(limits))
    tasks = _triage(run, pairs, options)
    workers = max(1, min(options.workers or _default_workers(), len(tasks) or 1))
    spec, sandbox_lines, protections = _sandbox(limits, options)
    run_id, problems = _dispatch(run, tasks, limits, options, workers, spec) if tasks else ("", [])
    write_json(state_file(course, "status.json"), run.statuses)
    results = [run.rows[p] for p in pairs if p in run.rows]
    mode = "fast" if fast_mode(options) else "full"
    csv_path = Path(options.csv_path) if options.csv_path else course.root / "grades.csv"
    if results:
        write_csv(results, csv_path, protections, mode)
    return GradeReport(results=results, csv_path=csv_path, course_dir=course.root,
                       wall_s=round(time.perf_counter() - started, 2), workers=workers,
                       sandbox=sandbox_lines, warnings=problems, protections=protections, run_id=run_id,
                       mode=mode)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="submission", desc="grading", dynamic_ncols=True)
