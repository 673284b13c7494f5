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
3. Submissions are sharded over ``workers`` processes through a queue (one
   at a time, the slowest of the last run first). Each worker has its own course
   directory and gradebook copy, a kernel fork server
   (:mod:`course_utils.grader.zygote`), and runs nbgrader's ``Autograde``
   converter in-process with :class:`~course_utils.grader.execute.GuardedExecute`
   (nbgrader has no parallel autograde: its issue 174). As each submission
   finishes, the parent merges its grades into the course gradebook with
   nbgrader's API and copies its autograded folder; at the end each worker runs
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

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import nbformat
from traitlets import Bool, Dict, Float, Integer, List, Unicode
from traitlets.config import Config, Configurable, PyFileConfigLoader

from course_utils.grader import cells as roles
from course_utils.grader import integrity
from course_utils.grader.report import STATUS_ORDER, SubmissionResult, format_table, write_csv
from course_utils.grader.sandbox import SandboxSpec

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
        "Grade on Dask: a scheduler address (tcp://host:8786) or 'local' for a LocalCluster; "
        "empty: the built-in process pool.")).tag(config=True)
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
            with _quiet_logs():
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


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class _quiet_logs:  # noqa: N801 - used as a context manager
    """Route nbgrader/traitlets logs to a file (or nowhere) while converters run."""

    def __init__(self, logfile: Path | None = None) -> None:
        self.logfile = logfile
        self.capture = _Capture()

    def __enter__(self) -> _Capture:
        self.logger = logging.getLogger("traitlets")
        self.saved = (self.logger.level, self.logger.propagate, list(self.logger.handlers))
        self.logger.handlers = [self.capture]
        if self.logfile is not None:
            handler = logging.FileHandler(self.logfile)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            self.logger.handlers.append(handler)
        self.logger.setLevel(logging.WARNING)
        self.logger.propagate = False
        return self.capture

    def __exit__(self, *exc: object) -> None:
        for handler in self.logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.close()
        self.logger.setLevel(self.saved[0])
        self.logger.propagate = self.saved[1]
        self.logger.handlers = self.saved[2]


# ---------------------------------------------------------------------------------------------
# The worker process


@dataclass
class _WorkerSettings:
    course: _Course
    assignments: dict[str, _Assignment]
    workdir: Path
    sandbox: SandboxSpec
    kernel_env: dict[str, str]
    zygote_env: dict[str, str]
    preload: list[str]
    kill_grace: float
    feedback: bool
    ipc: bool
    zygote_socket: str | None = None  # the run's shared fork server (None: each worker starts its own)


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    dest.symlink_to(src)


def _replace_tree(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    if src.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest, symlinks=False)


def _fast_sqlite(prefix: Path) -> None:
    """No fsync for gradebooks under ``prefix`` (a worker's throwaway copy)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        try:
            path = dbapi_connection.execute("PRAGMA database_list").fetchone()[2]
        except Exception:  # noqa: BLE001 - not sqlite
            return
        if path and str(path).startswith(str(prefix)):
            dbapi_connection.execute("PRAGMA synchronous=OFF")
            dbapi_connection.execute("PRAGMA journal_mode=MEMORY")

    event.listen(Engine, "connect", on_connect)


class _Worker:
    """One grading process: its own course directory, gradebook copy and zygote."""

    def __init__(self, settings: _WorkerSettings, number: int) -> None:
        from course_utils.grader import kernel

        self.s = settings
        self.root = settings.workdir / f"worker-{number}"
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "submitted").mkdir(parents=True)
        _link(settings.course.source, self.root / "source")
        self.db = self.root / "gradebook.db"
        db_path = settings.course.db_url.removeprefix("sqlite:///")
        shutil.copyfile(db_path, self.db)
        _fast_sqlite(self.root)
        self.log = self.root / "grader.log"
        self.graded: list[tuple[str, str]] = []
        self.views: dict[str, Any] = {}  # assignment -> its kernels' view of the data
        self.zygote = kernel.Zygote(self.root / "zygote", settings.preload, settings.zygote_env,
                                    attach=settings.zygote_socket)
        self.runtime = kernel.KernelRuntime(
            zygote=self.zygote, workdir=self.root / "kernels", sandbox=settings.sandbox,
            kernel_env=settings.kernel_env, ipc=settings.ipc)
        kernel.configure(self.runtime)
        # nbgrader's autograde adds a new submission's rows in a way SQLAlchemy 2 warns about
        # ("Object of type <SubmittedAssignment> not in session"); the rows are written all the
        # same, and the warning would print once per submission above the table.
        from sqlalchemy.exc import SAWarning

        warnings.filterwarnings("ignore", message=r"Object of type <Submitted\w+> not in session",
                                category=SAWarning)
        # The judge runs test code here: the same mode as the kernels (budget() agrees).
        os.environ["COURSE_FAST"] = settings.kernel_env.get("COURSE_FAST", "0")
        os.environ["JUPYTER_RUNTIME_DIR"] = str(self.root / "runtime")

    def close(self) -> None:
        from course_utils.grader.sandbox import remove_cgroups

        self.zygote.close()
        remove_cgroups(self.s.kernel_env.get("COURSE_GRADE_RUN", ""))  # whatever a kill left behind
        if not os.environ.get("COURSE_GRADE_KEEP"):  # keep logs for debugging the grader
            shutil.rmtree(self.root, ignore_errors=True)

    def _config(self, info: _Assignment) -> Config:
        from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
        from nbgrader.preprocessors import (
            AssignLatePenalties,
            GetGrades,
            IgnorePattern,
            LimitOutput,
            SaveAutoGrades,
        )

        from course_utils.grader.execute import GuardedExecute, HideHiddenTests
        from course_utils.grader.kernel import GraderKernelManager

        cfg = Config(self.s.course.config)
        cfg.CourseDirectory.root = str(self.root)
        cfg.CourseDirectory.source_directory = "source"
        cfg.CourseDirectory.submitted_directory = "submitted"
        cfg.CourseDirectory.autograded_directory = "autograded"
        cfg.CourseDirectory.feedback_directory = "feedback"
        cfg.CourseDirectory.db_url = f"sqlite:///{self.db}"
        # nbgrader's own list with Execute replaced; CheckCellMetadata already ran when
        # the submission was sanitized (its JSON-schema check costs a second per notebook).
        cfg.Autograde.autograde_preprocessors = [
            GuardedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
            SaveAutoGrades, AssignLatePenalties,
        ]
        cfg.GuardedExecute.timeout = info.timeout
        cfg.GuardedExecute.submission_timeout = float(info.submission_timeout)
        cfg.GuardedExecute.kill_grace = self.s.kill_grace
        cfg.GuardedExecute.bindings = [list(b) for b in info.bindings]
        cfg.GuardedExecute.kernel_manager_class = GraderKernelManager
        cfg.GuardedExecute.judge = info.judged
        cfg.GuardedExecute.tests = dict(info.tests)
        sockets = self.root / "kernels" / "ipc"
        sockets.mkdir(parents=True, exist_ok=True)
        cfg.GuardedExecute.socket_dir = [str(sockets)]
        cfg.GuardedExecute.scrub_paths = [str(self.root), str(self.s.workdir)]
        cfg.GuardedExecute.startup_timeout = 120
        cfg.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
        return cfg

    def grade(self, student: str, name: str, notebooks: list[str]) -> dict[str, Any]:
        from nbgrader.converters import Autograde
        from nbgrader.coursedir import CourseDirectory

        from course_utils.grader import execute

        started = time.perf_counter()
        info = self.s.assignments[name]
        folder = self.s.course.submitted / student / name
        staged = self.root / "submitted" / student / name
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        sanitized: tuple[list[str], list[str]] = ([], [])
        for path in folder.iterdir():
            if path.suffix == ".ipynb" and path.stem in info.skeleton and path.stem in notebooks:
                nb = nbformat.read(path, as_version=4)
                codes, notes = roles.sanitize(nb, info.skeleton[path.stem])
                sanitized[0].extend(codes)
                sanitized[1].extend(f"{path.stem}: {note}" for note in notes)
                if roles.put_back_deleted(nb, info.skeleton[path.stem]) or codes:
                    nbformat.write(nb, staged / path.name)
                    continue
            if path.suffix != ".ipynb" or path.stem in notebooks:
                _link(path.resolve(), staged / path.name)
        for step in ("autograded", "feedback"):
            shutil.rmtree(self.root / step / student / name, ignore_errors=True)
        self.runtime.sandbox = SandboxSpec(**{**asdict(self.s.sandbox), "memory_mb": info.memory_mb})
        view = self._view(info)
        self.runtime.data_paths = view.readonly
        self.runtime.kernel_env = {**self.s.kernel_env, **view.env}
        cfg = self._config(info)
        cfg.CourseDirectory.student_id = student
        cfg.CourseDirectory.assignment_id = name
        execute.INCIDENTS.clear()
        result: dict[str, Any] = {"student": student, "assignment": name,
                                  "codes": list(dict.fromkeys(sanitized[0])), "details": sanitized[1]}
        timings: dict[str, float] = {}
        with _quiet_logs(self.log) as capture:
            try:
                mark = time.perf_counter()
                Autograde(coursedir=CourseDirectory(config=cfg), config=cfg, force=True).start()
                timings["autograde"] = time.perf_counter() - mark
                graded = True
            except Exception as err:  # noqa: BLE001 - one submission never stops the run
                graded = False
                errors = [m for m in capture.messages if "Traceback" in m or "Error" in m]
                reason = (errors[-1].strip().splitlines()[-1] if errors else str(err))[:300]
                result["codes"].append("grader-error")
                result["details"].append(f"nbgrader could not grade it: {reason}")
            if graded:
                self.graded.append((student, name))
        for incident in execute.INCIDENTS:
            if incident.kind not in result["codes"]:
                result["codes"].append(incident.kind)
            result["details"].append(incident.detail)
        result["grades"] = self._grades(student, name) if graded else None
        course = self.s.course
        _replace_tree(self.root / "autograded" / student / name, course.autograded / student / name)
        result["seconds"] = round(time.perf_counter() - started, 2)
        timings.update(execute.TIMINGS)
        result["timings"] = {k: round(v, 2) for k, v in timings.items()}
        return result

    def _view(self, info: _Assignment) -> Any:
        """The data view of ``info``'s kernels, built on first use."""
        from course_utils.grader import dataview

        if info.name not in self.views:
            self.views[info.name] = dataview.build(self.root / "data-views" / info.name, info.withheld)
        return self.views[info.name]

    def feedback(self) -> list[str]:
        """nbgrader's GenerateFeedback over everything this worker graded, in one pass.

        One pass compiles the HTML templates once instead of once per submission.
        Returns what went wrong (empty: every feedback file was written).
        """
        from nbgrader.converters import GenerateFeedback
        from nbgrader.coursedir import CourseDirectory

        if not self.graded or not self.s.feedback:
            return []
        cfg = self._config(next(iter(self.s.assignments.values())))
        cfg.CourseDirectory.student_id = "*"
        cfg.CourseDirectory.assignment_id = "*"
        problems = []
        with _quiet_logs(self.log) as capture:
            try:
                GenerateFeedback(coursedir=CourseDirectory(config=cfg), config=cfg,
                                 force=True).start()
            except Exception:  # noqa: BLE001 - some feedback failed; the rest is written
                problems += [m.splitlines()[0] for m in capture.messages][:5]
        for student, name in self.graded:
            target = self.s.course.feedback / student / name
            _replace_tree(self.root / "feedback" / student / name, target)
        return problems

    def _grades(self, student: str, name: str) -> dict[str, Any]:
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{self.db}") as gb:
            sub = gb.find_submission(name, student)
            return {
                "timestamp": sub.timestamp.isoformat() if sub.timestamp else None,
                "notebooks": {
                    nb.name: {
                        "grades": {g.name: [g.auto_score, g.needs_manual_grade] for g in nb.grades},
                        "comments": {c.name: c.auto_comment for c in nb.comments},
                        "late_penalty": nb.late_submission_penalty,
                    }
                    for nb in sub.notebooks
                },
            }


def _worker_main(conn: Connection, settings: _WorkerSettings, number: int) -> None:
    """Grade the students the parent sends until it sends ``None``."""
    worker = None
    try:
        worker = _Worker(settings, number)
        conn.send(("ready", number))
        while True:
            task = conn.recv()
            if task is None:
                conn.send(("feedback", worker.feedback()))
                break
            student, items = task
            results = []
            for name, notebooks in items:
                try:
                    results.append(worker.grade(student, name, notebooks))
                except Exception:  # noqa: BLE001
                    results.append({"student": student, "assignment": name, "grades": None,
                                    "codes": ["grader-error"], "seconds": 0.0,
                                    "details": [traceback.format_exc().strip().splitlines()[-1]]})
            conn.send(("done", results))
    except (EOFError, KeyboardInterrupt):
        pass
    except Exception:  # noqa: BLE001
        conn.send(("failed", traceback.format_exc()))
    finally:
        if worker is not None:
            worker.close()
        conn.close()


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


def _warm_judge(modules: Iterable[str]) -> None:
    """Import what the judge needs (numpy, torch, the setup cells' modules) before workers fork."""
    import importlib

    from course_utils.grader import judge  # noqa: F401 - inherited by the workers

    for name in ["numpy", "torch", *modules]:
        with contextlib.suppress(Exception):  # a module that fails here fails in the judge, per test
            importlib.import_module(name)


def _preload(assignments: Iterable[_Assignment]) -> list[str]:
    """Modules the setup cells import (``from a import b`` adds ``a.b`` when it is a module)."""
    import importlib.util

    modules: list[str] = ["course_utils", "course_utils.checks"]
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


class _Pool:
    """A few forked workers fed one student at a time over pipes (no threads)."""

    def __init__(self, count: int, settings: _WorkerSettings) -> None:
        ctx = multiprocessing.get_context("fork" if threading.active_count() == 1 else "spawn")
        self.ctx = ctx
        self.settings = settings
        self.workers: dict[Connection, tuple[Any, Any]] = {}
        self.problems: list[str] = []
        self.retried: set[tuple[str, str]] = set()
        self.number = 0
        for _ in range(count):
            self._start()

    def _start(self) -> None:
        self.number += 1
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker_main, args=(child, self.settings, self.number),
                                daemon=True)
        proc.start()
        child.close()
        self.workers[parent] = (proc, None)

    def run(self, tasks: list[tuple[str, list[tuple[str, list[str]]]]],
            on_result: Callable[[dict[str, Any]], None]) -> None:
        queue = list(reversed(tasks))
        busy = 0
        while self.workers and (queue or busy):
            for conn in wait(list(self.workers)):
                proc, task = self.workers[conn]
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    kind, payload = "died", None
                if task is not None:
                    busy -= 1
                if kind == "done":
                    for result in payload:
                        on_result(result)
                elif kind in ("died", "failed") and task is not None:
                    key = (task[0], task[1][0][0])
                    if key not in self.retried:  # once more on a fresh worker: not the next student's loss
                        self.retried.add(key)
                        queue.append(task)
                    else:
                        for name, _ in task[1]:
                            on_result({"student": task[0], "assignment": name, "grades": None,
                                       "codes": ["grader-error"], "seconds": 0.0,
                                       "details": [f"the grading worker died twice on this submission: "
                                                   f"{payload or 'exited'}"[:300]]})
                if kind in ("died", "failed"):
                    del self.workers[conn]
                    proc.join(timeout=1)
                    if kind == "failed" and task is None:
                        raise RuntimeError(f"a grading worker could not start:\n{payload}")
                    if queue:
                        self._start()
                    continue
                if queue:
                    task = queue.pop()
                    conn.send(task)
                    busy += 1
                    self.workers[conn] = (proc, task)
                else:
                    self.workers[conn] = (proc, None)
        self.close()

    def close(self) -> None:
        """Ask every worker to write its feedback and stop; wait for them."""
        for conn in list(self.workers):
            try:
                conn.send(None)
            except OSError:
                pass
        for conn, (proc, _) in list(self.workers.items()):
            try:
                kind, payload = conn.recv()
                if kind == "feedback":
                    self.problems += payload
            except (EOFError, OSError):
                pass
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
            conn.close()
        self.workers.clear()


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
        if not options.force and previous and previous.get("mtime") == mtime and done:
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
        # One fork server for all workers, started first: its imports run while this process
        # imports the judge's, which the workers then inherit when they fork.
        shared = kernel.Zygote(workdir / "zygote", preload, zygote_env,
                               listen=str(workdir / "zygote" / "server.sock"))
        scheduler = options.scheduler if options.scheduler is not None else limits.scheduler
        if not scheduler:
            _warm_judge(preload)  # inherited by the pool's forked workers
        settings = _WorkerSettings(
            course=course, assignments=infos, workdir=workdir, sandbox=spec, kernel_env=kernel_env,
            zygote_env=zygote_env, preload=preload,
            kill_grace=options.kill_grace if options.kill_grace is not None else limits.kill_grace,
            feedback=options.feedback, ipc=ipc, zygote_socket=shared.listen)
        total = len(tasks)
        ordered = tasks
        if scheduler:
            from course_utils.grader.cluster import DaskPool

            pool: _Pool | DaskPool = DaskPool(workers, settings, scheduler)
        else:
            pool = _Pool(workers, settings)  # fork before the progress bar starts its thread
        bar = _progress(total, options.progress)

        def on_result(result: dict[str, Any]) -> None:
            _merge(course, result)
            key = (result["student"], result["assignment"])
            rows[key] = _finish(course, infos, statuses, notes, result)
            _write_json(_state_file(course, "status.json"), statuses)
            bar.update(1)

        try:
            pool.run(ordered, on_result)
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
