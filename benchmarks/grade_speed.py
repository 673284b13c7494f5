"""Plain sequential ``nbgrader autograde`` vs ``course grade --workers N`` on the same K submissions.

Usage: ``python benchmarks/grade_speed.py [-k 8] [--workers 2] [--assignment 01_numpy_backprop] [--dask]``

Builds one course with K submissions of an assignment (the reference solution
and its typical mistakes, in turn), copies it twice and grades one copy with
``nbgrader autograde <assignment> --create --force`` (one process, one kernel
after another) and the other with ``course grade --workers N --force``. Both
are timed as commands, start-up included, with the same environment (one
BLAS thread per kernel, fast mode; locked kernels and the judge for course grade).
Prints both wall times, the ratio, the judge's and kernel start's share, and the
per-submission overhead over the notebook's own run time: the time its cells
take in an interpreter that has already imported everything, i.e. what is left
once kernel start, imports and grading machinery are taken away. Also checks
that both graders gave the same scores. ``--dask`` also grades a third copy with
``course grade --scheduler local`` (a Dask LocalCluster of N worker processes) and
prints its wall time against the built-in pool's.
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

from course_utils import grading  # noqa: E402

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
    grading.prepare_course(course, [assignment])
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
            nb = grading.build_submission(release_nb, solution_nb, variants[i % len(variants)])
            grading.write_submission(course, f"student{i:03d}", assignment, nb, release_path.stem)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", type=int, default=8, help="number of submissions")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--assignment", default="01_numpy_backprop")
    parser.add_argument("--threads", default="1", help="OMP_NUM_THREADS for every kernel")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--dask", action="store_true", help="also grade on a Dask LocalCluster")
    args = parser.parse_args()

    env = dict(os.environ, COURSE_FAST="1", MPLBACKEND="Agg", OMP_NUM_THREADS=args.threads,
               MKL_NUM_THREADS=args.threads, OPENBLAS_NUM_THREADS=args.threads)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    work = Path(tempfile.mkdtemp(prefix="grade-speed-"))
    try:
        base = work / "base"
        build(base, args.assignment, args.k)
        ours = work / "ours"
        shutil.copytree(base, ours)
        load = os.getloadavg()[0]
        print(f"{args.k} submissions of {args.assignment}; {os.cpu_count()} cores; "
              f"load average {load:.1f} at start; OMP_NUM_THREADS={args.threads}")

        solution = ROOT / "solutions" / args.assignment / f"{args.assignment}.ipynb"
        own = json.loads(subprocess.run([sys.executable, "-c", OWN_TIME, str(solution), "3"], env=env,
                                        capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        own_s = own["own_s"]
        print(f"notebook's own run time (cells only, imports done): {own_s:6.2f} s")

        t_ours = timed([sys.executable, "-m", "course_utils", "grade", str(ours), "-a", args.assignment,
                        "--workers", str(args.workers), "--force", "--no-progress", "--no-feedback"],
                       ROOT, env)
        status = json.loads((ours / "autograded" / ".course_grade" / "status.json").read_text())
        worker_s = sum(v.get("seconds", 0.0) for v in status.values()) / args.k
        judge_s = sum(v.get("timings", {}).get("judge", 0.0) for v in status.values()) / args.k
        kernel_s = sum(v.get("timings", {}).get("kernel_start", 0.0) for v in status.values()) / args.k
        print(f"course grade --workers {args.workers}:       {t_ours:6.1f} s wall, "
              f"{t_ours / args.k:5.2f} s per submission; {worker_s:5.2f} worker-s per submission, "
              f"overhead {worker_s - own_s:5.2f} s over the notebook's own time")
        print(f"  of which: locked kernel start {kernel_s:5.2f} s, graded cells in the judge "
              f"{judge_s:5.2f} s (the tests themselves included) per submission")
        if args.dask:
            on_dask = work / "dask"
            shutil.copytree(base, on_dask)
            t_dask = timed([sys.executable, "-m", "course_utils", "grade", str(on_dask), "-a", args.assignment,
                            "--workers", str(args.workers), "--force", "--no-progress", "--no-feedback",
                            "--scheduler", "local"], ROOT, env)
            print(f"course grade --scheduler local:  {t_dask:6.1f} s wall, {args.k / t_dask * 60:5.1f} "
                  f"submissions/min (pool: {args.k / t_ours * 60:5.1f}); Dask takes "
                  f"{t_dask / t_ours:.2f}x the pool's time")
            if scores(on_dask, args.assignment) != scores(ours, args.assignment):
                print("Dask and the pool gave DIFFERENT scores")
                return 1
        if args.skip_baseline:
            return 0
        t_base = timed([sys.executable, "-m", "nbgrader", "autograde", args.assignment, "--create",
                        "--force", "--log-level=WARN"], base, env)
        print(f"nbgrader autograde (sequential): {t_base:6.1f} s wall, "
              f"{t_base / args.k:5.2f} s per submission, overhead {t_base / args.k - own_s:5.2f} s "
              "over the notebook's own time")
        print(f"speed-up: {t_base / t_ours:.2f}x (goal: at least 3x with 2 workers on 2 cores)")
        same = scores(base, args.assignment) == scores(ours, args.assignment)
        print(f"same scores from both: {'yes' if same else 'NO'}")
        return 0 if same else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
