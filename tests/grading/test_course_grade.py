"""``course grade`` on the bundled sample submissions: exact scores, statuses, outputs.

One demo course (notebook 01: the reference solution, the untouched release,
the typical mistakes, the hostile and the broken submissions) is graded once
per module with two workers; the tests read that run. Determinism re-grades a
few of them (``--force``) and compares.
"""

from __future__ import annotations

import csv
import html
import os
import re
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from course_utils.grader import GradeOptions, demo, grade, sandbox
from course_utils.release import project_root

from .conftest import cell_text, load_mistakes

pytestmark = pytest.mark.slow

A = "01_numpy_backprop"
CELLS = ("test-forward", "test-backward", "test-sgd", "test-train")
# student -> (points of test-forward, test-backward, test-sgd, test-train), status
EXPECTED = {
    "correct": ((2, 4, 2, 2), "ok"),
    "untouched": ((0, 0, 0, 0), "ok"),
    "honest-noisy": ((2, 4, 2, 2), "ok"),
    "hostile-patches-numpy": ((0, 4, 2, 2), "tamper-undone+suspicious"),
    "hostile-patches-checks": ((2, 0, 2, 2), "tamper-undone+suspicious"),
    "hostile-swallows-errors": ((2, 4, 0, 2), "tamper-undone+suspicious"),
    "hostile-blanks-tests": ((0, 4, 2, 2), "tamper-undone+suspicious"),
    "hostile-patches-during-test": ((2, 4, 2, 0), "tampered+tamper-undone+suspicious"),
    "hostile-patches-in-background": ((2, 0, 0, 0), "tampered+tamper-undone+suspicious"),
    "hostile-patches-in-each-call": ((2, 0, 0, 0), "tampered+tamper-undone+suspicious"),
    "hostile-fakes-score": ((0, 4, 2, 2), "suspicious"),
    "hostile-fakes-messages": ((0, 4, 2, 2), "ok"),
    "hostile-returns-tricks": ((0, 4, 2, 2), "suspicious"),
    "hostile-writes-files": ((0, 4, 2, 2), "suspicious"),
    "hostile-exits": ((2, 4, 0, 0), "kernel-died"),
    "hostile-segfaults": ((2, 0, 0, 0), "kernel-died+suspicious"),
    "hostile-eats-memory": ((2, 4, 2, 0), "memory"),
    "hostile-loops": ((2, 4, 0, 2), "timeout"),
    "hostile-reads-source": ((0, 4, 2, 2), "suspicious"),
    "hostile-root-tricks": ((2, 0, 2, 2), "suspicious"),
    "hostile-exhausts-resources": ((2, 4, 0, 2), "ok"),
    "hostile-patches-c-level": ((0, 4, 2, 2), "tamper-undone+suspicious"),
    "hostile-deep-code": ((2, 4, 2, 0), "memory+suspicious"),
    "hostile-edits-roles": ((0, 4, 2, 2), "edited-cells"),
    "honest-duplicates": ((2, 4, 2, 2), "duplicate-cells"),
    "honest-scratch-cells": ((2, 4, 2, 2), "ok"),
    "hostile-ignores-interrupt": ((2, 4, 2, 0), "timeout"),
    "edits-test-cell": ((0, 4, 2, 2), "edited-cells"),
    "deletes-test-cell": ((2, 4, 0, 2), "deleted-cells"),
    "broken-json": ((0, 0, 0, 0), "malformed-notebook"),
    "no-notebook": ((0, 0, 0, 0), "missing-notebook"),
    "misnamed": ((0, 0, 0, 0), "misnamed-notebook"),
}
POINTS = dict(zip(CELLS, (2, 4, 2, 2), strict=True))
# Re-graded to check determinism: honest, wrong, tampering and crashing submissions.
REGRADE = ["correct", "forgot-relu-and-rebinds", "hostile-patches-numpy",
           "hostile-patches-during-test", "hostile-fakes-messages", "hostile-exits"]


LOCKED = not sandbox.probe(sandbox.SandboxSpec(memory_mb=2048))
_MACHINE_ATTACKS = set(demo.LOCKED_01)


def _leftovers(run_id: str) -> dict[str, list[str]]:
    """What of this grading run still exists: processes, /dev/shm files, folders, cgroups."""
    processes = []  # every process of a kernel lives in its cgroup, named after the run
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"/{run_id}-" in Path(f"/proc/{pid}/cgroup").read_text():
                processes.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80])
        except OSError:
            continue
    cgroups = "/sys/fs/cgroup/memory"
    return {
        "processes": processes,
        "shm": [n for n in os.listdir("/dev/shm") if n == "filler"] if os.path.isdir("/dev/shm") else [],
        "tmp": [run_id] if (Path(tempfile.gettempdir()) / run_id).exists() else [],
        "cgroups": [d for d in os.listdir(cgroups) if d.startswith(run_id)] if os.path.isdir(cgroups) else [],
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("demo")
    report, samples, problems = demo.run_demo(course, [A], workers=2, progress=False)
    leftovers = _leftovers(report.run_id)
    return course, report, samples, problems, leftovers


def _rows(report):
    return {r.student: r for r in report.results}


def test_every_sample_matches_the_demo_answer_key(graded):
    """Does every sample submission get exactly the scores and status the demo promises?"""
    problems = graded[3]
    assert problems == []


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_exact_scores_and_status(graded, student):
    """Correct, untouched, hostile and broken submissions: exact points per cell and status."""
    if student in _MACHINE_ATTACKS and not LOCKED:
        pytest.skip("attacks on the machine run only where the kernel is locked")
    points, status = EXPECTED[student]
    row = _rows(graded[1])[student]
    assert row.scores == dict(zip(CELLS, map(float, points), strict=True)), row.details
    assert row.status == status, row.details
    assert row.total == sum(points) and row.max_total == 10


def _outputs(course, student, cell):
    nb = nbformat.read(course / "autograded" / student / A / f"{A}.ipynb", as_version=4)
    found = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == cell)
    return found.outputs


def test_kernel_messages_cannot_pass_a_test(graded):
    """A kernel that drops its error messages and prints pass lines still fails: the judge decides."""
    outputs = _outputs(graded[0], "hostile-fakes-messages", "test-forward")
    assert [o.output_type for o in outputs][-1] == "error"
    assert "values do not match" in outputs[-1].evalue


def test_honest_noise_on_stderr_keeps_the_points_and_shows_no_grader_paths(graded):
    """logging, warnings and tqdm on stderr in a graded function: full marks, no machine paths."""
    course = graded[0]
    outputs = _outputs(course, "honest-noisy", "test-forward")
    assert all(o.output_type == "stream" and o.name == "stdout" for o in outputs)
    text = "".join(o.text for o in outputs)
    assert "forward called" in text and "only a warning" in text
    assert str(course) not in text and "course-grade-" not in text


def test_typical_mistakes_lose_exactly_their_cells(graded):
    """Each mistakes.py entry loses exactly the cells it lists and keeps the others."""
    rows = _rows(graded[1])
    for student, mistake in load_mistakes(A).items():
        want = {c: (0.0 if c in mistake["loses"] else float(p)) for c, p in POINTS.items()}
        assert rows[student].scores == want
        assert rows[student].status == "ok", rows[student].details
        for cell, words in mistake.get("says", {}).items():
            text = cell_text(graded[0] / "autograded" / student / A / f"{A}.ipynb", cell)
            assert words in text, f"{student}/{cell}: feedback lacks {words!r}:\n{text[-1500:]}"


def test_unknown_assignment_is_a_status_row(graded):
    row = _rows(graded[1])["wrong-folder"]
    assert (row.assignment, row.status, row.scores) == ("99_not_an_assignment", "unknown-assignment", {})


def test_statuses_say_what_happened(graded):
    """The details name the cell, the cause, and what the grader did."""
    rows = _rows(graded[1])
    text = {s: " | ".join(r.details) for s, r in rows.items()}
    assert "kernel died in cell 'sgd' (exit code 3)" in text["hostile-exits"]
    assert "SIGSEGV" in text["hostile-segfaults"]
    assert "did not stop when interrupted; the kernel was killed" in text["hostile-ignores-interrupt"]
    assert "was interrupted" in text["hostile-loops"]
    assert "MemoryError" in text["hostile-eats-memory"]
    assert "patches np.allclose" in text["hostile-patches-numpy"]
    assert "installs a custom exception handler" in text["hostile-swallows-errors"]
    assert "adds an IPython input transformer" in text["hostile-blanks-tests"]
    assert "rebinds checks" in text["hostile-patches-checks"]
    assert "test-forward" in text["edits-test-cell"] and "test-sgd" in text["deletes-test-cell"]


def test_gradebook_holds_the_same_scores(graded):
    """The merged nbgrader gradebook agrees with the table."""
    from nbgrader.api import Gradebook

    course, report = graded[:2]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for row in report.results:
            if row.status == "unknown-assignment":
                continue
            sub = gb.find_submission(A, row.student)
            got = {g.name: float(g.score) for nb in sub.notebooks for g in nb.grades}
            assert got == row.scores, row.student


def test_csv_has_a_row_per_submission(graded):
    course, report = graded[:2]
    with open(course / "grades.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["student", "assignment", *CELLS, "total", "max", "status", "details",
                             "protections", "mode"]
    assert {r["mode"] for r in rows} == {report.mode} == {"fast"}  # the tests run with COURSE_FAST=1
    assert {r["protections"] for r in rows} == {report.protections}
    assert (report.protections == "all") == LOCKED
    assert len(rows) == len(report.results)
    by_student = {r["student"]: r for r in rows}
    assert [by_student["correct"][c] for c in (*CELLS, "total", "max", "status")] == \
        ["2", "4", "2", "2", "10", "10", "ok"]
    assert by_student["hostile-exits"]["status"] == "kernel-died"
    assert "exit code 3" in by_student["hostile-exits"]["details"]


def _hidden_lines() -> list[str]:
    source = (project_root() / "solutions" / A / f"{A}.py").read_text()
    hidden, lines = False, []
    for line in source.splitlines():
        if "BEGIN HIDDEN TESTS" in line:
            hidden = True
        elif "END HIDDEN TESTS" in line:
            hidden = False
        elif hidden and len(line.strip()) > 25:
            lines.append(line.strip())
    visible = source.replace("\n".join(lines), "")
    return [ln for ln in lines if visible.count(ln) == 0 or "_rng" in ln]


def test_feedback_exists_and_hides_hidden_tests(graded):
    """Every graded submission has HTML feedback, and none shows hidden test code."""
    course, report = graded[:2]
    hidden = _hidden_lines()
    assert len(hidden) > 10
    graded_rows = [r for r in report.results if not ({"unknown-assignment", "missing-notebook",
                                                       "malformed-notebook", "misnamed-notebook"}
                                                      & set(r.codes))]
    assert len(graded_rows) >= 18
    for row in graded_rows:
        path = course / "feedback" / row.student / A / f"{A}.html"
        assert path.exists(), row.student
        text = html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))
        assert "Score:" in text
        leaked = [ln for ln in hidden if ln in text]
        assert not leaked, f"{row.student}: feedback shows hidden test code: {leaked[:3]}"
        assert "BEGIN HIDDEN TESTS" not in text
    # the instructor's autograded copy does run the hidden tests
    autograded = (course / "autograded" / "correct" / A / f"{A}.ipynb").read_text()
    assert any(ln in autograded for ln in hidden)


@pytest.mark.skipif(not LOCKED, reason="the kernel is not locked on this host")
def test_attacks_on_the_machine_find_nothing_and_leave_nothing(graded):
    """Source, classmates and gradebook out of sight; no process, file or cgroup outlives the run."""
    course, report, _, _, leftovers = graded
    assert report.run_id and leftovers == {"processes": [], "shm": [], "tmp": [], "cgroups": []}
    assert "locked kernels" in report.sandbox[0]
    text = {student: "".join(o.get("text", "") for c in nbformat.read(
        course / "autograded" / student / A / f"{A}.ipynb", as_version=4).cells for o in c.get("outputs", []))
        for student in ("hostile-reads-source", "hostile-root-tricks", "hostile-exhausts-resources")}
    assert "found outside its own folder: 0" in text["hostile-reads-source"]
    assert "'remount / writable': 'refused'" in text["hostile-root-tricks"]
    assert "other processes killed: 0" in text["hostile-root-tricks"]
    assert "more output than the grader keeps" in text["hostile-exhausts-resources"]
    written = re.search(r"MiB written: (\{.*\})", text["hostile-exhausts-resources"]).group(1)
    assert all(v <= 256 for v in eval(written).values()), written  # noqa: S307 - our own sample's output
    for student in ("hostile-exhausts-resources", "hostile-writes-files"):
        size = sum(p.stat().st_size for p in (course / "autograded" / student).rglob("*") if p.is_file())
        assert size < 5_000_000, f"{student}: {size} bytes copied into autograded/"
    assert not Path("/tmp/course-grade-hostile-was-here").exists()
    time.sleep(1.5)  # the daemon tried every 0.5 s to rewrite grades.csv
    with open(course / "grades.csv", newline="") as fh:
        assert "hostile-root-tricks,100" not in fh.read()


def test_rerun_skips_and_force_regrades_identically(graded):
    """A re-run skips what is graded; re-grading with --force gives the same table."""
    course, report = graded[:2]
    first = _rows(report)
    again = grade(GradeOptions(course_dir=course, workers=2, progress=False, students=REGRADE, feedback=False))
    assert all(r.skipped for r in again.results)
    forced = grade(GradeOptions(course_dir=course, workers=2, progress=False, students=REGRADE, feedback=False,
                                force=True))
    assert not any(r.skipped for r in forced.results)
    for row in forced.results:
        assert (row.scores, row.status) == (first[row.student].scores, first[row.student].status)


def _scratch_outputs(course):
    nb = nbformat.read(course / "autograded" / "honest-scratch-cells" / A / f"{A}.ipynb", as_version=4)
    assert [c.source for c in nb.cells[-2:]] == list(demo.SCRATCH_CELLS)
    return ["".join(o.get("text", "") + o.get("evalue", "") for o in c.outputs) for c in nb.cells[-2:]]


def test_cells_after_the_last_graded_cell_run_only_when_the_course_asks(graded):
    """Scratch cells after the last test are not run by default (the feedback says so); run_trailing_cells runs them.

    Either way they cannot change a grade: a failing one costs nothing.
    """
    from course_utils.grader.execute import TRAILING_NOTE

    course, report = graded[:2]
    assert _scratch_outputs(course) == [TRAILING_NOTE, TRAILING_NOTE]
    feedback = (course / "feedback" / "honest-scratch-cells" / A / f"{A}.html").read_text()
    assert "not run by the autograder" in html.unescape(feedback)
    config = course / "nbgrader_config.py"
    before = config.read_text()
    config.write_text(before + f"c.CourseGrade.per_assignment = {{{A!r}: {{'run_trailing_cells': True}}}}\n")
    try:
        again = grade(GradeOptions(course_dir=course, workers=1, progress=False, students=["honest-scratch-cells"],
                                   feedback=False, force=True))
    finally:
        config.write_text(before)
    (row,) = again.results
    assert (row.scores, row.status) == (_rows(report)["honest-scratch-cells"].scores, "ok")
    ran = _scratch_outputs(course)
    assert "scratch: trying things out" in ran[0] and "a scratch cell left failing" in ran[1], ran


def test_cli_wires_the_grade_command():
    from course_utils.cli import build_parser
    from course_utils.grader import command

    args = build_parser().parse_args(["grade", "--demo", "--workers", "2"])
    assert args.func is command.run and args.demo and args.workers == 2


def test_demo_names_the_samples_when_asked_for_one_it_lacks(tmp_path):
    """Does ``course grade --demo -s NAME`` with an unknown NAME say which samples exist, before grading?"""
    with pytest.raises(demo.UnknownSample, match="no demo sample is called nobody; the samples are .*hostile-exits"):
        demo.run_demo(tmp_path / "demo", [A], students=["nobody", "correct"], progress=False)
    assert not list((tmp_path / "demo" / "autograded").glob("*/*/*.ipynb")), "nothing is graded"
