"""Throughput of ``course grade`` (a Dask LocalCluster) against workers, against plain nbgrader, and a projection.

Usage::

    python benchmarks/grade_speed.py [-k 8] [--workers 1 2] [--assignment 01_numpy_backprop]
                                     [--compare-tree PATH] [--skip-baseline] [--estimate [--full] [--cells N]]

Builds one course with K submissions of an assignment (the reference solution and its
typical mistakes, in turn) and grades copies of it:

* with ``course grade --workers N --force`` for each N of ``--workers`` (a LocalCluster of N
  one-threaded workers): wall time, submissions per minute, worker-seconds per submission,
  and the overhead over the notebook's own run time (its cells in an interpreter that has
  already imported everything: what is left once kernel start, imports and grading
  machinery are taken away), with the locked kernel's start and the judge's share;
* with ``--compare-tree PATH``: the same command run from another checkout of this
  repository (a ``git worktree`` of an older commit, e.g. the last one with the built-in
  process pool, ``fbfb1ce``), with the largest N, and the ratio of the two wall times in one run;
* unless ``--skip-baseline``: ``nbgrader autograde <assignment> --create --force`` (one
  process, one kernel after another), and the speed-up.

All are timed as commands, start-up included, with the same environment (one BLAS thread
per kernel, fast mode unless ``--full``), and must give the same scores.

``--estimate`` also grades the reference solution of every assignment in one run and
projects, from those measured per-submission worker-seconds, the wall time of a term's
grading (1,000 students x 11 notebooks) on N nodes of C cores (one worker per core); with
``--cells N`` it lists each notebook's N slowest cells, and ``-k 0 --estimate`` does this alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_utils.grader import sample  # noqa: E402

OWN_TIME = '''
import json, os, sys, time
import nbformat
import numpy, torch, torch._dynamo, matplotlib, matplotlib.pyplot  # imports are overhead, not the notebook
import course_utils, course_utils.checks
nb = nbformat.read(sys.argv[1], as_version=4)
os.chdir(os.path.dirname(sys.argv[1]))
best = None
for _ in range(int(sys.argv[2])):
    ns = {"__name__": "__main__"}
    start = time.perf_counter()
    for cell in nb.cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, "cell", "exec"), ns)
    matplotlib.pyplot.close("all")
    elapsed = time.perf_counter() - start
    best = elapsed if best is None else min(best, elapsed)
print(json.dumps({"own_s": best}))
'''


def build(course: Path, assignment: str, k: int) -> None:
    sample.prepare_course(course, [assignment])
    mistakes_path = ROOT / "solutions" / assignment / "mistakes.py"
    namespace: dict = {}
    if mistakes_path.exists():
        exec(mistakes_path.read_text(), namespace)  # noqa: S102 - the project's own table
    variants = [{}] + [m["replace"] for m in namespace.get("MISTAKES", {}).values()]
    for release_path in sorted((course / "release" / assignment).glob("*.ipynb")):
        import nbformat

        release_nb = nbformat.read(release_path, as_version=4)
        solution_nb = nbformat.read(course / "source" / assignment / release_path.name, as_version=4)
        for i in range(k):
            nb = sample.build_submission(release_nb, solution_nb, variants[i % len(variants)])
            sample.write_submission(course, f"student{i:03d}", assignment, nb, release_path.stem)


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return elapsed


def scores(course: Path, assignment: str) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {s.student.id: float(s.score) for s in gb.find_assignment(assignment).submissions}


def grade_command(course: Path, assignment: str | None, workers: int) -> list[str]:
    cmd = [sys.executable, "-m", "course_utils", "grade", str(course), "--workers", str(workers), "--force",
           "--no-progress", "--no-feedback"]
    return cmd + (["-a", assignment] if assignment else [])


def per_submission(course: Path) -> dict[str, dict[str, float]]:
    """status.json's worker-seconds and timings per submission (``student/assignment``); cells as ``cell:NAME``."""
    status = json.loads((course / "autograded" / ".course_grade" / "status.json").read_text())
    return {key: {"seconds": v.get("seconds", 0.0), **v.get("timings", {}),
                  **{f"cell:{cell}": s for cell, s in v.get("cells", {}).items()}} for key, v in status.items()}


def estimate(env: dict[str, str], work: Path, full: bool, cells: int = 0) -> None:
    """Grade every assignment's reference solution once; project a term of 1,000 x 11 submissions.

    ``cells``: also list each assignment's ``cells`` slowest cells (where a submission's time goes).
    """
    from course_utils.release import assignments

    names = assignments()
    course = work / "all"
    sample.prepare_course(course, names)
    import nbformat

    for name in names:
        for release_path in sorted((course / "release" / name).glob("*.ipynb")):
            release_nb = nbformat.read(release_path, as_version=4)
            solution_nb = nbformat.read(course / "source" / name / release_path.name, as_version=4)
            sample.write_submission(course, "reference", name, sample.build_submission(release_nb, solution_nb, {}),
                                     release_path.stem)
    cores = len(os.sched_getaffinity(0))
    wall = timed(grade_command(course, None, cores), ROOT, env)
    found = {key.split("/")[1]: v for key, v in per_submission(course).items()}
    costs = {name: v["seconds"] for name, v in found.items()}
    mode = "full" if full else "fast (COURSE_FAST=1)"
    print(f"\nper-submission cost, {mode} mode, reference solutions ({wall:.0f} s wall for all 11 on {cores} workers):")
    for name in names:
        print(f"  {name:24s} {costs.get(name, float('nan')):7.1f} worker-s")
        slowest = sorted(((v, k[5:]) for k, v in found.get(name, {}).items() if k.startswith("cell:")), reverse=True)
        for seconds, cell in slowest[:cells]:
            print(f"      {cell:30s} {seconds:7.1f} s")
    term = 1000 * sum(costs.values())
    print(f"a term, 1,000 students x {len(names)} notebooks: {term / 3600:,.1f} worker-hours "
          "(one worker per core; wrong answers fail faster, so this is an upper estimate)")
    for nodes, per_node in ((1, cores), (1, 32), (8, 32), (32, 32)):
        hours = term / (nodes * per_node) / 3600
        print(f"  {nodes:3d} node(s) x {per_node:2d} cores: {hours:7.2f} h wall")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", type=int, default=8, help="number of submissions")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="LocalCluster sizes to time")
    parser.add_argument("--assignment", default="01_numpy_backprop")
    parser.add_argument("--threads", default="1", help="OMP_NUM_THREADS for every kernel")
    parser.add_argument("--skip-baseline", action="store_true", help="skip sequential nbgrader autograde")
    parser.add_argument("--compare-tree", type=Path, help="another checkout to time with the largest --workers")
    parser.add_argument("--estimate", action="store_true", help="project a term's grading (1,000 x 11)")
    parser.add_argument("--full", action="store_true", help="the notebooks' full mode (as grades are made)")
    parser.add_argument("--cells", type=int, default=0, help="with --estimate: each assignment's N slowest cells")
    args = parser.parse_args()

    env = dict(os.environ, COURSE_FAST="0" if args.full else "1", MPLBACKEND="Agg", OMP_NUM_THREADS=args.threads,
               MKL_NUM_THREADS=args.threads, OPENBLAS_NUM_THREADS=args.threads)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    work = Path(tempfile.mkdtemp(prefix="grade-speed-"))
    try:
        if args.k == 0 and args.estimate:  # the projection alone
            estimate(env, work, args.full, args.cells)
            return 0
        base = work / "base"
        build(base, args.assignment, args.k)
        load = os.getloadavg()[0]
        print(f"{args.k} submissions of {args.assignment}; {os.cpu_count()} cores; "
              f"load average {load:.1f} at start; OMP_NUM_THREADS={args.threads}")

        solution = ROOT / "solutions" / args.assignment / f"{args.assignment}.ipynb"
        own = json.loads(subprocess.run([sys.executable, "-c", OWN_TIME, str(solution), "3"], env=env,
                                        capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        own_s = own["own_s"]
        print(f"notebook's own run time (cells only, imports done): {own_s:6.2f} s")

        walls: dict[int, float] = {}
        reference: dict[str, float] | None = None
        for n in args.workers:
            ours = work / f"workers-{n}"
            shutil.copytree(base, ours)
            walls[n] = timed(grade_command(ours, args.assignment, n), ROOT, env)
            costs = per_submission(ours).values()
            worker_s = sum(c["seconds"] for c in costs) / args.k
            judge_s = sum(c.get("judge", 0.0) for c in costs) / args.k
            kernel_s = sum(c.get("kernel_start", 0.0) for c in costs) / args.k
            print(f"course grade --workers {n}: {walls[n]:6.1f} s wall, {args.k / walls[n] * 60:5.1f} submissions/min; "
                  f"{worker_s:5.2f} worker-s per submission, overhead {worker_s - own_s:5.2f} s over the notebook's "
                  f"own time (locked kernel start {kernel_s:4.2f} s, graded cells in the judge {judge_s:4.2f} s)")
            found = scores(ours, args.assignment)
            if reference is not None and found != reference:
                print(f"--workers {n} gave DIFFERENT scores")
                return 1
            reference = found
        largest = max(args.workers)
        if args.compare_tree:
            other = work / "other"
            shutil.copytree(base, other)
            other_env = dict(env, PYTHONPATH=str(args.compare_tree.resolve()))
            t_other = timed(grade_command(other, args.assignment, largest), args.compare_tree, other_env)
            print(f"{args.compare_tree} --workers {largest}: {t_other:6.1f} s wall; this tree takes "
                  f"{walls[largest] / t_other:.2f}x its time")
            if scores(other, args.assignment) != reference:
                print("the other tree gave DIFFERENT scores")
                return 1
        if not args.skip_baseline:
            t_base = timed([sys.executable, "-m", "nbgrader", "autograde", args.assignment, "--create",
                            "--force", "--log-level=WARN"], base, env)
            print(f"nbgrader autograde (sequential): {t_base:6.1f} s wall, "
                  f"{t_base / args.k:5.2f} s per submission, overhead {t_base / args.k - own_s:5.2f} s "
                  "over the notebook's own time")
            print(f"speed-up with {largest} workers: {t_base / walls[largest]:.2f}x")
            if scores(base, args.assignment) != reference:
                print("nbgrader and course grade gave DIFFERENT scores")
                return 1
        if args.estimate:
            estimate(env, work, args.full, args.cells)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
