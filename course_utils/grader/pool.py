"""The built-in pool: a few forked worker processes fed one submission at a time over pipes.

A worker that dies is replaced, and its submission is graded once more on a fresh one;
twice dead, it is a ``grader-error``. At the end each worker writes its feedback.
(:mod:`course_utils.grader.cluster` does the same on Dask.)
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from course_utils.grader.worker import WorkerSettings, worker_main

__all__ = ["Pool"]


class Pool:
    """A few forked workers fed one student at a time over pipes (no threads)."""

    def __init__(self, count: int, settings: WorkerSettings) -> None:
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
        proc = self.ctx.Process(target=worker_main, args=(child, self.settings, self.number),
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
