"""``course grade``: an nbgrader autograder instructors can trust at scale.

Modules, one job each:

* :mod:`~course_utils.grader.config` - every option, declared once: the course's config file and the flags;
* :mod:`~course_utils.grader.course` - the course directory and the grader's own state in it;
* :mod:`~course_utils.grader.assignment` - an assignment as read from the gradebook; a submission inspected;
* :mod:`~course_utils.grader.gradebook` - assignments generated into nbgrader's gradebook, results merged;
* :mod:`~course_utils.grader.runner` - plan, triage, dispatch to the cluster, CSV (:func:`grade`);
* :mod:`~course_utils.grader.cluster` - one Dask task per submission, on a LocalCluster or a scheduler;
* :mod:`~course_utils.grader.worker` - one worker's grading state: gradebook copy, kernels, nbgrader;
* :mod:`~course_utils.grader.execute` - nbgrader preprocessors: judged graded cells, caps, safe feedback;
* :mod:`~course_utils.grader.judge` - run a graded cell's tests outside the kernel, decide the verdict;
* :mod:`~course_utils.grader.wire` - the data-only boundary: frames and values, no pickle;
* :mod:`~course_utils.grader.agent` - the kernel's side: answer the judge's requests;
* :mod:`~course_utils.grader.kernel` - kernels forked from a per-worker zygote;
* :mod:`~course_utils.grader.zygote` - the fork server itself;
* :mod:`~course_utils.grader.sandbox` - the locked kernel: namespaces, private root, caps;
* :mod:`~course_utils.grader.guard` - restore and verify around in-kernel tests (courses not yet judged);
* :mod:`~course_utils.grader.integrity` - checks before running: files, checksums, odd code;
* :mod:`~course_utils.grader.cells` - cell roles restored, copies and deleted cells handled;
* :mod:`~course_utils.grader.report` - result rows, the CSV and the score table;
* :mod:`~course_utils.grader.sample` - sample courses and simulated submissions (demo, tests, benchmarks);
* :mod:`~course_utils.grader.demo` - sample submissions (correct, mistakes, hostile).
"""

from typing import Any

__all__ = [
    "CourseGrade",
    "GradeOptions",
    "GradeReport",
    "SubmissionResult",
    "format_table",
    "generate",
    "grade",
    "write_csv",
]


_HOMES = {"CourseGrade": "config", "GradeOptions": "config", "GradeReport": "report",
          "SubmissionResult": "report", "format_table": "report", "write_csv": "report",
          "generate": "gradebook", "grade": "runner"}


def __getattr__(name: str) -> Any:
    """Import the grader on first use, so ``course --help`` stays light."""
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"course_utils.grader.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'course_utils.grader' has no attribute {name!r}")
