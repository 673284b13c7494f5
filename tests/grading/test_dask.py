"""``course grade`` on a real Dask cluster: a scheduler and workers on 127.0.0.1, and a LocalCluster.

The cluster test starts ``dask scheduler`` and two ``dask worker`` processes
itself, runs ``course grade --demo --scheduler ADDRESS`` on some of the demo's samples
(``-s``; its own answer key checks their scores and status) and kills one worker while
it grades.
The LocalCluster tests (the default ``course grade`` runs on) kill a worker mid-run,
and the client mid-run, and check every submission is graded exactly once.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from course_utils.grader import sample
from course_utils.release import project_root

pytestmark = pytest.mark.slow
pytest.importorskip("distributed")

A = "01_numpy_backprop"


def _dask(*args: str, log: Path) -> subprocess.Popen:
    """A ``dask`` command (scheduler or worker) of this interpreter, its output in ``log``."""
    return subprocess.Popen([str(Path(sys.executable).parent / "dask"), *args], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, env=sample.tool_env(), start_new_session=True)


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path, monkeypatch):  # tmp_path first: pytest places it by tempfile
    """A run these tests kill cannot clean up after itself: remove its folders and cgroups afterwards.

    The runs get a temporary directory of their own (``TMPDIR`` for the processes started here,
    ``tempfile.tempdir`` for this one), so only their leftovers are removed: a run of a test in
    another pytest worker keeps its ``course-grade-*`` folder while it grades.
    """
    import shutil
    import tempfile
    from multiprocessing import util

    from course_utils.grader import sandbox

    util.get_temp_dir()  # multiprocessing's own (its fork server's socket) stays where it was, for later tests
    own = Path(tempfile.mkdtemp(prefix="dask-test-"))  # short: unix socket paths stay under the limit
    monkeypatch.setenv("TMPDIR", str(own))
    monkeypatch.setattr(tempfile, "tempdir", str(own))
    yield
    for folder in own.glob("course-grade-*"):
        sandbox.remove_cgroups(folder.name)
    shutil.rmtree(own, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


# The demo's samples this test grades on the cluster: honest, wrong, tampering, crashing and
# malformed ones (test_course_grade checks the whole demo against its answer key).
CLUSTER_SAMPLES = ["correct", "untouched", "forgot-relu-and-rebinds", "transposed-grad-w2", "hostile-patches-numpy",
                   "hostile-patches-in-background", "hostile-fakes-messages", "hostile-exits", "broken-json"]


def test_demo_on_a_scheduler_and_two_workers_survives_a_killed_worker(tmp_path):
    """With one of two workers killed mid-run, is every sample graded once, with its expected score and status?"""
    scheduler_file = tmp_path / "scheduler.json"
    procs = [_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                   "--scheduler-file", str(scheduler_file), log=tmp_path / "scheduler.log")]
    try:
        address = _wait_for(lambda: scheduler_file.exists() and json.loads(scheduler_file.read_text())["address"],
                            60, "the scheduler")
        assert address.startswith("tcp://127.0.0.1:")
        for n in (1, 2):
            procs.append(_dask("worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                               "--no-dashboard", "--name", f"w{n}", log=tmp_path / f"worker{n}.log"))
        demo_dir = tmp_path / "demo"
        grade = subprocess.Popen(
            [sys.executable, "-m", "course_utils", "grade", "--demo", "--demo-dir", str(demo_dir),
             "--scheduler", address, "--no-progress", *(f"--student={name}" for name in CLUSTER_SAMPLES)],
            cwd=project_root(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=sample.tool_env())
        status = demo_dir / "autograded" / ".course_grade" / "status.json"

        def graded() -> int:
            try:
                return sum("seconds" in v for v in json.loads(status.read_text()).values())
            except (OSError, ValueError):
                return 0

        _wait_for(lambda: graded() >= 3, 600, "the first results")
        os.killpg(procs[1].pid, signal.SIGKILL)  # worker 1, mid-run: its tasks go to worker 2
        out, _ = grade.communicate(timeout=900)
        assert grade.returncode == 0, out[-5000:]
        assert f"all {len(CLUSTER_SAMPLES)} sample submissions got exactly their expected scores" in out
        with (demo_dir / "grades.csv").open() as fh:
            rows = [(r["student"], r["assignment"]) for r in csv.DictReader(fh)]
        assert len(rows) == len(set(rows)), "every submission once"
        assert sorted(student for student, _ in rows) == sorted(CLUSTER_SAMPLES)
        assert procs[1].poll() is not None and procs[2].poll() is None, "one worker killed, one left"
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _local_workers() -> list:
    """This process's LocalCluster worker processes: the children of its multiprocessing fork server."""
    import psutil

    servers = [p for p in psutil.Process().children() if "forkserver" in " ".join(p.cmdline())]
    return [worker for server in servers for worker in server.children()]


def test_a_local_cluster_worker_killed_mid_task_costs_nothing(tmp_path):
    """A LocalCluster (the default) worker SIGKILLed mid-submission: is every submission graded once, exactly?"""
    import threading

    course = sample.prepare_course(tmp_path / "course", [A])
    release = nbformat.read(course / "release" / A / f"{A}.ipynb", as_version=4)
    solution = nbformat.read(course / "source" / A / f"{A}.ipynb", as_version=4)
    namespace: dict = {}
    exec((project_root() / "solutions" / A / "mistakes.py").read_text(), namespace)  # noqa: S102
    mistakes = dict(list(namespace["MISTAKES"].items())[:3])
    variants = {"correct": {}, "correct-too": {}, **{k: m["replace"] for k, m in mistakes.items()}}
    for student, replace in variants.items():
        sample.write_submission(course, student, A, sample.build_submission(release, solution, replace))
    status = course / "autograded" / ".course_grade" / "status.json"
    killed: list[int] = []

    def kill_one_worker_mid_run() -> None:
        _wait_for(lambda: status.exists() and any("seconds" in v for v in json.loads(status.read_text()).values()),
                  300, "a first merged result")
        worker = _wait_for(_local_workers, 30, "the cluster's workers")[0]
        killed.append(worker.pid)
        worker.kill()

    killer = threading.Thread(target=kill_one_worker_mid_run, daemon=True)
    killer.start()
    rows = sample.grade(course, [A], workers=2, feedback=False)
    killer.join(timeout=5)
    assert killed, "no worker was killed: the test did not test anything"
    assert sorted(r.student for r in rows) == sorted(variants), "every submission once"
    for row in rows:
        loses = mistakes.get(row.student, {}).get("loses", [])
        expected = {cell: 0.0 if cell in loses else pts for cell, pts in row.max_scores.items()}
        assert row.scores == expected, f"{row.student}: {row.status} {row.details}"
        assert row.status == "ok", f"{row.student}: {row.status} {row.details}"


def test_a_run_stopped_midway_picks_up_where_it_stopped(tmp_path):
    """After the client (and its LocalCluster) is killed mid-run, does a re-run grade only what is left, exactly?"""
    course = sample.prepare_course(tmp_path / "course", [A])
    release = nbformat.read(course / "release" / A / f"{A}.ipynb", as_version=4)
    solution = nbformat.read(course / "source" / A / f"{A}.ipynb", as_version=4)
    students = [f"student{i}" for i in range(5)]
    for student in students:
        sample.write_submission(course, student, A, sample.build_submission(release, solution, {}))
    status = course / "autograded" / ".course_grade" / "status.json"
    first = subprocess.Popen(
        [sys.executable, "-m", "course_utils", "grade", str(course), "--workers", "1", "--scheduler", "local",
         "--no-progress", "--no-feedback"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=sample.tool_env(), start_new_session=True)
    try:
        _wait_for(lambda: status.exists() and sum("seconds" in v for v in json.loads(status.read_text()).values()) >= 2,
                  300, "two merged results")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    merged = {k for k, v in json.loads(status.read_text()).items() if "seconds" in v}
    assert 2 <= len(merged) < len(students), "killed mid-run"
    rows = sample.grade(course, [A], workers=2, force=False, feedback=False)
    assert {r.student for r in rows if r.skipped} == {k.split("/")[0] for k in merged}
    assert all(sum(r.scores.values()) == sum(r.max_scores.values()) for r in rows), "every one graded, exactly"
