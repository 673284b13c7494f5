"""One grading worker: its own course folder, gradebook copy and fork server; grades one submission at a time.

A worker is a process of a Dask cluster (:mod:`course_utils.grader.cluster`). It stages a
submission (restoring edited and deleted locked cells), runs nbgrader's ``Autograde`` in-process with the judge and the
locked kernel (:class:`~course_utils.grader.execute.GuardedExecute`), copies the autograded
folder into the course, and returns the grades as plain data for the parent to merge.
At the end it writes the feedback of everything it graded in one ``GenerateFeedback`` pass.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
from traitlets.config import Config

from course_utils.grader import cells as roles
from course_utils.grader.logs import quiet_logs
from course_utils.grader.sandbox import SandboxSpec

if TYPE_CHECKING:
    from course_utils.grader.assignment import AssignmentInfo
    from course_utils.grader.course import Course

__all__ = ["Worker", "WorkerSettings"]


# ---------------------------------------------------------------------------------------------
# The worker process


@dataclass
class WorkerSettings:
    course: Course
    assignments: dict[str, AssignmentInfo]
    workdir: Path
    sandbox: SandboxSpec
    kernel_env: dict[str, str]
    zygote_env: dict[str, str]
    preload: list[str]
    kill_grace: float
    feedback: bool
    ipc: bool
    zygote_socket: str | None = None  # the run's shared fork server (None: each worker starts its own)
    protection: dict[str, list[str]] | None = None  # the guard's Protection, as plain lists


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


class Worker:
    """One grading process: its own course directory, gradebook copy and zygote."""

    def __init__(self, settings: WorkerSettings, number: int) -> None:
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
                                    attach=settings.zygote_socket, protection=settings.protection)
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

    def _config(self, info: AssignmentInfo) -> Config:
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
        cfg.GuardedExecute.run_trailing = info.run_trailing
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
        with quiet_logs(self.log) as capture:
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

    def _view(self, info: AssignmentInfo) -> Any:
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
        with quiet_logs(self.log) as capture:
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
