"""``course grade``: an nbgrader autograder instructors can trust at scale.

Modules, one job each:

* :mod:`~course_utils.grader.runner` - plan, shard over workers, merge, CSV (:func:`grade`);
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


def __getattr__(name: str) -> Any:
    """Import the grader on first use, so ``course --help`` stays light."""
    if name in __all__:
        from course_utils.grader import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'course_utils.grader' has no attribute {name!r}")
