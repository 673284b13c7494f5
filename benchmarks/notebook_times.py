"""Wall time of every solution notebook, executed top to bottom with a fresh kernel.

Usage: ``python benchmarks/notebook_times.py [assignment ...] [--full]``

Runs in fast mode (``COURSE_FAST=1``) unless ``--full`` is given. The time
includes kernel start and imports, as a student or the autograder pays them.
Prints one line per notebook and exits non-zero if any notebook fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def time_notebook(path: Path, fast: bool) -> tuple[float, bool]:
    env = dict(os.environ, COURSE_FAST="1" if fast else "0", MPLBACKEND="Agg")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
            "--ExecutePreprocessor.timeout=3600", f"--output-dir={out}", str(path),
        ]
        start = time.perf_counter()
        result = subprocess.run(cmd, cwd=path.parent, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
    return elapsed, result.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    parser.add_argument("--full", action="store_true", help="full mode instead of fast mode")
    args = parser.parse_args()
    paths = sorted((ROOT / "solutions").glob("*/*.ipynb"))
    if args.assignments:
        paths = [p for p in paths if p.parent.name in args.assignments]
    failed = 0
    print(f"mode: {'full' if args.full else 'fast (COURSE_FAST=1)'}; cores: {os.cpu_count()}")
    for path in paths:
        elapsed, ok = time_notebook(path, fast=not args.full)
        failed += not ok
        print(f"{path.parent.name:<28} {elapsed:7.1f} s  {'ok' if ok else 'FAILED'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
