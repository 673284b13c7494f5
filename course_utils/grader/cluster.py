"""Grading on Dask: one task per submission, on a ``LocalCluster`` or an existing scheduler.

``course grade`` sends each submission to a Dask cluster as one task: by default a
``LocalCluster`` sized to the machine, or the cluster at ``--scheduler ADDRESS`` (or
``c.CourseGrade.scheduler``). A task runs on a Dask worker the grading of
:class:`course_utils.grader.worker.Worker` (the locked kernel, the judge, nbgrader's
autograde) and returns that submission's result; the client merges each result into
the gradebook as it arrives.

* **Workers prepare once**: the first task in a worker process builds its grading
  state (a gradebook copy, the fork server with torch imported, the data views)
  and keeps it for every later task of the same run; at the end
  :func:`finish_worker` runs on every worker (``Client.run``) to write the
  feedback of what it graded and to stop its fork server.
* **Faults**: a worker that dies mid-task has its task re-run elsewhere by Dask;
  the client merges each submission once (the autograded files are replaced, not
  added to), and a submission whose task failed on every try (on a ``LocalCluster``:
  a second worker died under it) is a ``grader-error``.
* **Where**: workers read the course folder at the client's path (a shared file
  system, as on a Slurm cluster; on Kubernetes, mount the course volume at the
  same path); each keeps its scratch folder locally.

``scheduler="local"`` starts a ``LocalCluster`` of one-threaded worker processes, forked
from a fork server that has already imported torch, nbgrader and the grader (a spawned
worker would spend seconds importing them; a worker that dies is replaced in well under one).
"""

from __future__ import annotations

import logging
import os
import traceback
import warnings
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["DaskPool", "finish_worker", "grade_task", "start_fork_server"]

_WORKERS: dict[str, Any] = {}  # in a Dask worker process: run id -> its grading state (a worker.Worker)


def _run_id(settings: Any) -> str:
    return str(settings.kernel_env.get("COURSE_GRADE_RUN") or settings.workdir.name)


def _worker_for(settings: Any) -> Any:
    """This process's grading state for the run of ``settings``, made on first use."""
    from course_utils.grader.worker import Worker

    run = _run_id(settings)
    if run not in _WORKERS:
        _WORKERS[run] = Worker(settings, os.getpid())
    return _WORKERS[run]


def grade_task(settings: Any, student: str, items: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    """Grade one student's submissions (``items``: assignment, notebooks) on this worker."""
    worker = _worker_for(settings)
    results = []
    for name, notebooks in items:
        try:
            results.append(worker.grade(student, name, notebooks))
        except Exception:  # noqa: BLE001 - one submission never stops the run
            results.append(_failure(student, name, traceback.format_exc().strip().splitlines()[-1]))
    return results


def finish_worker(run: str) -> list[str]:
    """Write the feedback of what this worker graded in run ``run``, and stop its fork server."""
    worker = _WORKERS.pop(run, None)
    if worker is None:
        return []
    try:
        return worker.feedback()
    finally:
        worker.close()


def _failure(student: str, name: str, why: str) -> dict[str, Any]:
    return {"student": student, "assignment": name, "grades": None, "codes": ["grader-error"],
            "seconds": 0.0, "details": [why[:300]]}


# What a LocalCluster's fork server imports once, for every worker forked from it.
_WORKER_MODULES = ("distributed", "numpy", "torch", "nbgrader.converters", "nbgrader.preprocessors",
                   "course_utils.grader.cluster", "course_utils.grader.worker", "course_utils.grader.judge",
                   "course_utils.grader.execute")
# A LocalCluster's settings: workers forked from a warm fork server, and a task whose worker
# died twice under it is given up (a grader-error), not tried a third time.
_LOCAL_CONFIG = {"distributed.worker.multiprocessing-method": "forkserver",
                 "distributed.scheduler.allowed-failures": 1}


def start_fork_server(preload: Iterable[str] = ()) -> None:
    """Start the fork server a ``LocalCluster``'s workers are forked from, importing ``preload``.

    Its imports take seconds (nbgrader alone imports a Jupyter server); started at the top
    of a run, they happen while the client plans it. Once per client process: later
    clusters reuse the running server.
    """
    import dask
    from distributed.utils import get_mp_context

    with dask.config.set(_LOCAL_CONFIG):
        ctx = get_mp_context()
    ctx.set_forkserver_preload(list(dict.fromkeys([*_WORKER_MODULES, *preload])))
    from multiprocessing import forkserver

    forkserver.ensure_running()


def _local_cluster(count: int, preload: Iterable[str]) -> Any:
    """A ``LocalCluster`` of ``count`` one-threaded worker processes with ``preload`` imported."""
    from distributed import LocalCluster

    start_fork_server(preload)
    # A forked worker has the fork server's environment: give it the client's, as spawn would.
    with warnings.catch_warnings():  # the scheduler's HTTP endpoint moves off a busy port 8787 by itself
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        return LocalCluster(n_workers=count, threads_per_worker=1, processes=True, dashboard_address=None,
                            silence_logs=logging.ERROR, memory_limit=0, env=dict(os.environ))


class DaskPool:
    """The runner's pool interface (``run``, ``problems``) on a Dask cluster."""

    def __init__(self, count: int, settings: Any, address: str = "local") -> None:
        import dask
        from distributed import Client

        self.settings = settings
        self.problems: list[str] = []
        self.cluster = None
        self._config = None
        if address == "local":
            self._config = dask.config.set(_LOCAL_CONFIG)  # until close(): the nanny reads it on restarts
            self.cluster = _local_cluster(count, settings.preload)
            self.client = Client(self.cluster)
        else:
            self.client = Client(address, timeout=60)
        self._settings = self.client.scatter(settings, broadcast=True, hash=False)

    def run(self, tasks: list[tuple[str, list[tuple[str, list[str]]]]],
            on_result: Callable[[dict[str, Any]], None]) -> None:
        """Submit every task (longest first keeps its priority) and merge results as they arrive."""
        from distributed import as_completed

        run = _run_id(self.settings)
        futures = {}
        for rank, (student, items) in enumerate(tasks):
            key = f"course-grade-{run}-{student}-{'+'.join(name for name, _ in items)}"
            future = self.client.submit(grade_task, self._settings, student, items, key=key, pure=False,
                                        retries=1, priority=len(tasks) - rank)
            futures[future] = (student, items)
        merged: set[tuple[str, str]] = set()
        try:
            for future in as_completed(futures):
                student, items = futures[future]
                try:
                    results = future.result()
                except Exception as err:  # noqa: BLE001 - a task that failed on every try
                    why = f"the grading task failed on every try ({type(err).__name__}: {err})"
                    results = [_failure(student, name, why) for name, _ in items]
                for result in results:
                    key = (result["student"], result["assignment"])
                    if key not in merged:  # once per submission, whatever Dask re-ran
                        merged.add(key)
                        on_result(result)
        finally:
            self.close()

    def close(self) -> None:
        """Feedback and fork servers on every worker, then the client (and a cluster we started)."""
        if self.client.status == "closed":
            return
        try:
            found = self.client.run(finish_worker, _run_id(self.settings))
            for problems in found.values():
                self.problems += problems
        except Exception as err:  # noqa: BLE001 - feedback is re-made by the next run
            self.problems.append(f"feedback on the Dask workers failed: {type(err).__name__}: {err}")
        finally:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()
            if self._config is not None:
                self._config.__exit__(None, None, None)
