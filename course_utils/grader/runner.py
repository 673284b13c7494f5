"""``course grade``: autograde a course's submissions with nbgrader, in parallel, contained.

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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from traitlets import Bool, Dict, Float, Integer, List, Unicode
from traitlets.config import Config, Configurable, PyFileConfigLoader

from course_utils.grader import cells as roles
from course_utils.grader import integrity
from course_utils.grader.report import STATUS_ORDER, SubmissionResult, format_table, write_csv
from course_utils.grader.sandbox import SandboxSpec
from course_utils.grader.worker import WorkerSettings, quiet_logs

__all__ = [
    "STATUS_ORDER",
    "CourseGrade",
    "GradeOptions",
    "GradeReport",
    "SubmissionResult",
    "format_table",
    "generate",
    "grade",
    "write_csv",
]

_STATE = ".course_grade"


class CourseGrade(Configurable):  # type: ignore[misc]
    """Limits of ``course grade``, set in the course's ``nbgrader_config.py``."""

    timeout = Integer(None, allow_none=True,
                      help="Seconds a cell may run (default: Execute.timeout, else 600).").tag(config=True)
    memory_mb = Integer(4096, help="Memory cap per kernel in MiB (RLIMIT_DATA; 0: none).").tag(
        config=True)
    kill_grace = Float(10.0, help="Seconds an interrupted cell may take to stop.").tag(config=True)
    network = Bool(False, help="Let student code use the network.").tag(config=True)
    per_assignment = Dict({}, help="assignment -> {timeout, memory_mb, submission_timeout} overrides.").tag(
        config=True)
    submission_timeout = Integer(3600, help="Seconds one notebook may run in all (0: no limit).").tag(
        config=True)
    disk_mb = Integer(512, help="MiB the kernel may write into its copy of the submission.").tag(config=True)
    max_processes = Integer(256, help="Processes one submission may run at once.").tag(config=True)
    in_kernel_tests = List(Unicode(), [], help=(
        "Assignments whose graded cells still run in the student's kernel under the guard, "
        "not in the judge (tests not yet written for the judge).")).tag(config=True)
    scheduler = Unicode("", help=(
        "The Dask cluster to grade on: a scheduler address (tcp://host:8786); "
        "empty or 'local': a LocalCluster sized to the machine.")).tag(config=True)
    withheld = Dict({}, help=(
        "assignment -> data files its students' kernels may not read while it is graded, as "
        "'dataset:file' (e.g. {'09_cifar10': ['cifar10:test_batch']}); the judge reads them.")).tag(config=True)


@dataclass
class GradeOptions:
    """What to grade and how; the fields mirror ``course grade``'s options."""

    course_dir: Path
    assignments: list[str] | None = None
    students: list[str] | None = None
    workers: int | None = None
    force: bool = False
    timeout: int | None = None
    memory_mb: int | None = None
    network: bool | None = None
    sandbox: bool = True
    fast: bool | None = None  # None: fast only when COURSE_FAST=1 (CI); grades use full mode
    feedback: bool = True
    csv_path: Path | None = None
    progress: bool = True
    kill_grace: float | None = None
    scheduler: str | None = None  # a Dask scheduler address, "local" (a LocalCluster), None: the config's


@dataclass
class GradeReport:
    """What :func:`grade` did."""

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


# ---------------------------------------------------------------------------------------------
# The course directory


@dataclass
class _Course:
    root: Path
    config: Config
    source: Path
    submitted: Path
    autograded: Path
    feedback: Path
    db_url: str
    ignore: list[str]


@dataclass
class _Assignment:
    name: str
    notebooks: dict[str, dict[str, str]]  # notebook -> locked cell -> release checksum
    cells: dict[str, dict[str, float]]  # notebook -> graded cell -> points, in notebook order
    bindings: list[tuple[str, str, str | None]]
    extra_files: list[str]
    timeout: int
    memory_mb: int
    submission_timeout: int = 0
    # notebook -> every cell of the source notebook that has a grade_id, in order, with
    # locked cells as released (hidden tests removed): used to put back deleted cells.
    skeleton: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # graded cell -> its source in the gradebook (hidden tests included): what the judge runs.
    tests: dict[str, str] = field(default_factory=dict)
    judged: bool = True
    withheld: list[str] = field(default_factory=list)  # data files the kernel may not read ("dataset:file")


# The course's grading choices that a copy of it (the tests' and the demo's) must keep.
_COURSE_CHOICES = ("in_kernel_tests", "withheld")


def course_choices(root: Path) -> str:
    """Config lines repeating the course's choices that a copy of it keeps.

    Its ``CourseDirectory.ignore`` (files never released) and its ``CourseGrade`` choices
    (judge coverage, withheld data): the demo's and the tests' courses read them from here.
    """
    config = _load_config(root)
    lines = [f"c.CourseDirectory.ignore = {list(config.CourseDirectory.ignore)!r}\n"] \
        if "ignore" in config.get("CourseDirectory", {}) else []
    section = config.get("CourseGrade", {})
    lines += [f"c.CourseGrade.{key} = {section[key]!r}\n" for key in _COURSE_CHOICES if key in section]
    return "".join(lines)


def _load_config(root: Path) -> Config:
    cfg = Config()
    path = root / "nbgrader_config.py"
    if path.exists():
        loader = PyFileConfigLoader(path.name, path=str(root))
        cfg.merge(loader.load_config())
    return cfg


def _course(root: Path) -> _Course:
    from nbgrader.coursedir import CourseDirectory

    root = root.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no course directory at {root}")
    cfg = _load_config(root)
    cfg.CourseDirectory.root = str(root)
    cd = CourseDirectory(config=cfg)
    return _Course(
        root=root, config=cfg,
        source=root / cd.source_directory, submitted=root / cd.submitted_directory,
        autograded=root / cd.autograded_directory, feedback=root / cd.feedback_directory,
        db_url=cd.db_url, ignore=list(cd.ignore),
    )


def _source_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.ipynb")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _state_file(course: _Course, name: str) -> Path:
    return course.autograded / _STATE / name


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


_ALEMBIC_HEAD: list[str] = []


def _alembic_head() -> str:
    """nbgrader's gradebook schema version, read in-process.

    nbgrader stamps every new gradebook by running ``alembic heads`` in a
    subprocess (seconds of interpreter start-up); this asks alembic's API the
    same question once per process.
    """
    if not _ALEMBIC_HEAD:
        import nbgrader
        from alembic.config import Config as AlembicConfig
        from alembic.script import ScriptDirectory

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(Path(nbgrader.__file__).parent / "alembic"))
        _ALEMBIC_HEAD.append(str(ScriptDirectory.from_config(cfg).get_current_head()))
    return _ALEMBIC_HEAD[0]


def _fast_gradebook_creation() -> None:
    import nbgrader.api

    nbgrader.api.get_alembic_version = _alembic_head


def generate(course_dir: Path, assignments: Iterable[str], *, force: bool = False,
             release_dir: Path | None = None) -> list[str]:
    """Put assignments into the gradebook with nbgrader's GenerateAssignment.

    Only assignments missing from the gradebook or whose source notebooks
    changed since are generated, unless ``force``. The student version nbgrader
    writes goes to ``release_dir`` (default: a temporary folder, so the course's
    own release is never rewritten). Returns the assignments generated.
    """
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory

    _fast_gradebook_creation()
    course = _course(course_dir)
    hashes_path = _state_file(course, "sources.json")
    hashes = _read_json(hashes_path)
    todo = []
    with Gradebook(course.db_url) as gb:
        for name in assignments:
            if not (course.source / name).is_dir():
                continue
            try:
                gb.find_assignment(name)
                known = True
            except MissingEntry:
                known = False
            if force or not known or hashes.get(name) != _source_hash(course.source / name):
                todo.append(name)
    for name in todo:
        with tempfile.TemporaryDirectory() as scratch:
            release = str(release_dir) if release_dir is not None else scratch
            cfg = Config(course.config)
            cfg.CourseDirectory.root = str(course.root)
            cfg.CourseDirectory.release_directory = release
            cfg.CourseDirectory.assignment_id = name
            cd = CourseDirectory(config=cfg)
            converter = GenerateAssignment(coursedir=cd, config=cfg)
            converter.force = True
            with quiet_logs():
                converter.start()
        hashes[name] = _source_hash(course.source / name)
    if todo:
        _write_json(hashes_path, hashes)
    return todo


def _assignment_info(course: _Course, name: str, limits: CourseGrade, options: GradeOptions
                     ) -> _Assignment:
    from nbgrader.api import Gradebook

    notebooks: dict[str, dict[str, str]] = {}
    cells: dict[str, dict[str, float]] = {}
    bindings: list[tuple[str, str, str | None]] = []
    skeleton: dict[str, list[dict[str, Any]]] = {}
    tests: dict[str, str] = {}
    with Gradebook(course.db_url) as gb:
        for nb in gb.find_assignment(name).notebooks:
            points = {c.name: float(c.max_score) for c in nb.grade_cells}
            tests.update({c.name: c.source for c in nb.source_cells
                          if c.name in points and c.cell_type == "code"})
            source = [{"name": c.name, "cell_type": c.cell_type, "source": c.source,
                       "locked": c.locked, "points": points.get(c.name)} for c in nb.source_cells]
            notebooks[nb.name] = integrity.expected_release_checksums(source)
            path = course.source / name / f"{nb.name}.ipynb"
            order = []
            if path.exists():
                source_nb = nbformat.read(path, as_version=4)
                order = [c.metadata.get("nbgrader", {}).get("grade_id") for c in source_nb.cells]
                bindings += [b for b in integrity.setup_bindings(source_nb) if b not in bindings]
                skeleton[nb.name] = roles.skeleton(source_nb)
            ranked = sorted(points, key=lambda c: order.index(c) if c in order else len(order))
            cells[nb.name] = {c: points[c] for c in ranked}
    import fnmatch

    extra = sorted(
        str(p.relative_to(course.source / name)) for p in (course.source / name).rglob("*")
        if p.is_file() and p.suffix != ".ipynb"
        and not any(fnmatch.fnmatch(part, pat) for pat in course.ignore for part in p.parts)
    )
    override = dict(limits.per_assignment.get(name, {}))
    execute_timeout = course.config.get("Execute", {}).get("timeout", 600)
    timeout = options.timeout or override.get("timeout") or limits.timeout or execute_timeout or 600
    memory = options.memory_mb if options.memory_mb is not None else \
        override.get("memory_mb", limits.memory_mb)
    return _Assignment(name=name, notebooks=notebooks, cells=cells, bindings=bindings,
                       extra_files=extra, timeout=int(timeout), memory_mb=int(memory),
                       skeleton=skeleton, tests=tests, judged=name not in limits.in_kernel_tests,
                       withheld=list(limits.withheld.get(name, [])),
                       submission_timeout=int(override.get("submission_timeout", limits.submission_timeout)))


def _inspect(folder: Path, info: _Assignment) -> integrity.Inspection:
    """Files, locked cells and a static scan of one submission, before anything runs."""
    found = integrity.inspect_submission(folder, info.notebooks)
    protected = {b[0]: b[1] for b in info.bindings}
    for nb_name in found.graded:
        nb = nbformat.read(folder / f"{nb_name}.ipynb", as_version=4)
        flags = integrity.scan_notebook(nb, protected)
        if flags:
            found.add("suspicious", f"{nb_name}: review " + "; ".join(flags))
    return found


def _submission_mtime(folder: Path) -> float:
    times = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()]
    return max(times, default=0.0)


# ---------------------------------------------------------------------------------------------
# Logging


# ---------------------------------------------------------------------------------------------
# The parent: plan, dispatch, merge, report


def _merge(course: _Course, result: dict[str, Any]) -> None:
    """Write one worker result into the course gradebook with nbgrader's API."""
    from nbgrader.api import Gradebook

    student, name, data = result["student"], result["assignment"], result.get("grades")
    with Gradebook(course.db_url) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbgrader's own SQLAlchemy warnings on a new submission
        gb.update_or_create_student(student)
        kwargs = {"timestamp": data["timestamp"]} if data and data.get("timestamp") else {}
        sub = gb.update_or_create_submission(name, student, **kwargs)
        for nb in sub.notebooks:
            saved = (data or {}).get("notebooks", {}).get(nb.name)
            for grade in nb.grades:
                score, manual = (saved["grades"].get(grade.name, [0.0, False]) if saved
                                 else [0.0, False])
                grade.auto_score = score
                grade.needs_manual_grade = bool(manual)
            for comment in nb.comments:
                comment.auto_comment = saved["comments"].get(comment.name) if saved else None
            nb.late_submission_penalty = saved.get("late_penalty") if saved else None
        gb.db.commit()


def _row(course: _Course, student: str, info: _Assignment | None, name: str) -> SubmissionResult:
    from nbgrader.api import Gradebook, MissingEntry

    row = SubmissionResult(student=student, assignment=name)
    if info is None:
        return row
    for graded_cells in info.cells.values():
        row.max_scores.update(graded_cells)
    row.max_total = sum(row.max_scores.values())
    with Gradebook(course.db_url) as gb:
        try:
            sub = gb.find_submission(name, student)
        except MissingEntry:
            row.scores = dict.fromkeys(row.max_scores, 0.0)
            return row
        penalty = 0.0
        manual = False
        for nb in sub.notebooks:
            for grade in nb.grades:
                row.scores[grade.name] = float(grade.score or 0.0)
                manual = manual or bool(grade.needs_manual_grade)
            penalty += float(nb.late_submission_penalty or 0.0)
        if manual:
            row.codes.append("needs-manual")
    row.scores = {c: row.scores.get(c, 0.0) for c in row.max_scores}
    row.total = round(sum(row.scores.values()) - penalty, 6)
    return row


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _prefetch_data(course: _Course, names: Iterable[str]) -> None:
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


def _preload(assignments: Iterable[_Assignment]) -> list[str]:
    """Modules the setup cells import (``from a import b`` adds ``a.b`` when it is a module)."""
    import importlib.util

    from course_utils.grader.guard import course_package_modules

    # The checks package with every module in it (found by the guard's rule), so each is loaded
    # and recorded by the guard before any student code runs.
    modules: list[str] = ["course_utils", *course_package_modules()]
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


def _fast(options: GradeOptions) -> bool:
    """Whether kernels run in fast mode: asked for, or COURSE_FAST=1 (the tests' switch)."""
    if options.fast is not None:
        return options.fast
    return os.environ.get("COURSE_FAST", "0").strip().lower() in ("1", "true", "yes", "on")


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
        "COURSE_FAST": "1" if _fast(options) else "0",
        "PYTHONPATH": os.pathsep.join(p for p in [package_root, os.environ.get("PYTHONPATH", "")] if p),
    })
    kernel_env = {k: zygote_env[k] for k in ("PYTHONHASHSEED", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                             "OPENBLAS_NUM_THREADS", "MPLBACKEND", "COURSE_FAST",
                                             "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
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
    """Grade the course's submissions; see the module docstring."""
    from filelock import FileLock

    started = time.perf_counter()
    course = _course(Path(options.course_dir))
    limits = CourseGrade(config=course.config)
    from course_utils.grader import dataview

    for entries in limits.withheld.values():
        dataview.validate(entries)  # a typo in the config stops the run before anything is graded
    (course.autograded / _STATE).mkdir(parents=True, exist_ok=True)
    with FileLock(str(course.autograded / _STATE / "lock")):
        return _grade_locked(course, limits, options, started)


def _plan(course: _Course, options: GradeOptions) -> list[tuple[str, str]]:
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


def _grade_locked(course: _Course, limits: CourseGrade, options: GradeOptions,
                  started: float) -> GradeReport:
    from nbgrader.api import Gradebook, MissingEntry

    pairs = _plan(course, options)
    known = sorted({name for _, name in pairs if (course.source / name).is_dir()}
                   | set(options.assignments or []) & {p.name for p in course.source.glob("*")})
    generate(course.root, known)
    infos: dict[str, _Assignment] = {}
    with Gradebook(course.db_url) as gb:
        for name in known:
            try:
                gb.find_assignment(name)
            except MissingEntry:
                continue
            infos[name] = None  # type: ignore[assignment]
    infos = {name: _assignment_info(course, name, limits, options) for name in infos}
    statuses = _read_json(_state_file(course, "status.json"))
    rows: dict[tuple[str, str], SubmissionResult] = {}
    notes: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    tasks: list[tuple[str, list[tuple[str, list[str]]]]] = []
    for student, name in pairs:
        key = f"{student}/{name}"
        folder = course.submitted / student / name
        info = infos.get(name)
        if info is None:
            row = SubmissionResult(student=student, assignment=name, codes=["unknown-assignment"],
                                   details=[f"no assignment named {name!r} in the course"])
            rows[(student, name)] = row
            continue
        mtime = _submission_mtime(folder)
        previous = statuses.get(key)
        done = (course.autograded / student / name).is_dir()
        # Done: graded from these files and merged ("seconds" is written with the merge), so a
        # run stopped midway (client, scheduler or machine) picks up exactly where it stopped.
        if not options.force and previous and previous.get("mtime") == mtime and "seconds" in previous and done:
            row = _row(course, student, info, name)
            row.codes = [c for c in previous["codes"] if c != "needs-manual"] + row.codes
            row.details, row.seconds, row.skipped = previous["details"], previous["seconds"], True
            rows[(student, name)] = row
            continue
        try:
            found = _inspect(folder, info)
        except Exception as err:  # noqa: BLE001 - one submission never stops the run
            found = integrity.Inspection()
            found.add("grader-error", f"the grader could not inspect it ({type(err).__name__}: {err})"[:300])
        notes[(student, name)] = (found.codes, found.details)
        statuses[key] = {"mtime": mtime}
        if found.graded:
            tasks.append((student, [(name, found.graded)]))
        else:
            _merge(course, {"student": student, "assignment": name, "grades": None})
            rows[(student, name)] = _finish(course, infos, statuses, notes, {
                "student": student, "assignment": name, "codes": [], "details": [], "seconds": 0.0})

    workers = max(1, min(options.workers or _default_workers(), len(tasks) or 1))
    # One submission per task, longest first by the last run's time (a dynamic queue then
    # keeps every worker busy until the end).
    previous = {key: float(v.get("seconds") or 0.0) for key, v in
                _read_json(_state_file(course, "status.json")).items()}
    tasks.sort(key=lambda t: (-previous.get(f"{t[0]}/{t[1][0][0]}", 0.0), t[1][0][0], t[0]))
    spec = SandboxSpec(
        network=not (options.network if options.network is not None else limits.network),
        filesystem=options.sandbox, memory_mb=0, max_file_mb=2048, disk_mb=limits.disk_mb,
        max_processes=limits.max_processes)
    if not options.sandbox:
        spec.network = False
    from course_utils.grader import sandbox as sandbox_module

    missing = sandbox_module.probe(SandboxSpec(network=spec.network, filesystem=spec.filesystem,
                                               memory_mb=max(limits.memory_mb, 256), max_file_mb=0))
    sandbox_lines, protections = _describe_sandbox(SandboxSpec(**{
        **asdict(spec), "memory_mb": limits.memory_mb if options.memory_mb is None else options.memory_mb}),
        missing)
    ipc = spec.network or spec.filesystem
    problems: list[str] = []
    run_id = ""
    if tasks:
        _prefetch_data(course, {items[0][0] for _, items in tasks})
        zygote_env, kernel_env = _environments(options, workers)
        workdir = Path(tempfile.mkdtemp(prefix="course-grade-"))
        run_id = workdir.name
        kernel_env["COURSE_GRADE_RUN"] = run_id  # names this run's kernels and their cgroups
        from course_utils.grader import kernel

        preload = _preload(infos.values())
        # One kernel fork server for all workers, started first: its imports run while the
        # cluster's workers start.
        shared = kernel.Zygote(workdir / "zygote", preload, zygote_env,
                               listen=str(workdir / "zygote" / "server.sock"))
        scheduler = (options.scheduler if options.scheduler is not None else limits.scheduler) or "local"
        settings = WorkerSettings(
            course=course, assignments=infos, workdir=workdir, sandbox=spec, kernel_env=kernel_env,
            zygote_env=zygote_env, preload=preload,
            kill_grace=options.kill_grace if options.kill_grace is not None else limits.kill_grace,
            feedback=options.feedback, ipc=ipc, zygote_socket=shared.listen)
        from course_utils.grader.cluster import DaskPool

        pool = DaskPool(workers, settings, scheduler)
        bar = _progress(len(tasks), options.progress)

        def on_result(result: dict[str, Any]) -> None:
            _merge(course, result)
            key = (result["student"], result["assignment"])
            rows[key] = _finish(course, infos, statuses, notes, result)
            _write_json(_state_file(course, "status.json"), statuses)
            bar.update(1)

        try:
            pool.run(tasks, on_result)
            problems += pool.problems
        finally:
            bar.close()
            shared.close()
            if not os.environ.get("COURSE_GRADE_KEEP"):
                shutil.rmtree(workdir, ignore_errors=True)
    _write_json(_state_file(course, "status.json"), statuses)
    results = [rows[p] for p in pairs if p in rows]
    csv_path = Path(options.csv_path) if options.csv_path else course.root / "grades.csv"
    if results:
        write_csv(results, csv_path, protections, "fast" if _fast(options) else "full")
    return GradeReport(results=results, csv_path=csv_path, course_dir=course.root,
                       wall_s=round(time.perf_counter() - started, 2), workers=workers,
                       sandbox=sandbox_lines, warnings=problems, protections=protections, run_id=run_id,
                       mode="fast" if _fast(options) else "full")


def _finish(course: _Course, infos: dict[str, _Assignment], statuses: dict[str, Any],
            notes: dict[tuple[str, str], tuple[list[str], list[str]]],
            result: dict[str, Any]) -> SubmissionResult:
    student, name = result["student"], result["assignment"]
    row = _row(course, student, infos.get(name), name)
    codes, details = notes.get((student, name), ([], []))
    row.codes = list(dict.fromkeys([*codes, *result.get("codes", []), *row.codes]))
    row.details = [*details, *result.get("details", [])]
    row.seconds = float(result.get("seconds", 0.0))
    row.timings = dict(result.get("timings", {}))
    statuses[f"{student}/{name}"].update(
        {"codes": row.codes, "details": row.details, "seconds": row.seconds,
         "timings": {k: v for k, v in row.timings.items() if not k.startswith("cell:")}})
    return row


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
