"""nbgrader preprocessors of the grader: contained execution and safe feedback.

:class:`GuardedExecute` replaces nbgrader's ``Execute`` in autograding. It runs
the notebook exactly as nbgrader does (same client, same outputs, same grading
by ``SaveAutoGrades``) and adds:

* **restore and verify** around every graded cell through the kernel guard
  (:mod:`course_utils.grader.guard`): tampering from earlier cells is undone
  before the test runs; tampering while the test runs adds an ``IntegrityError``
  output to the cell, so nbgrader scores it zero;
* **containment**: a cell past the timeout is interrupted; a kernel that does not
  stop within ``kill_grace`` seconds is killed. A kernel that dies (``os._exit``,
  a segfault, the memory cap) or is killed costs the submission only the cells it
  could not run: each gets a ``KernelDied`` error output (zero points) and the
  notebook is still saved and graded;
* **no partial credit by injection**: an ``execute_result`` in a graded cell
  (which nbgrader would read as a partial score) is turned into plain display
  output, so student code called by a test cannot print its own score.

What happened is recorded in :data:`INCIDENTS` for the worker to report.

:class:`HideHiddenTests` runs in ``generate_feedback``: it removes the hidden
test regions from graded cells (nbgrader's ``ClearHiddenTests``) and replaces
traceback frames of graded cells with a note, so feedback never shows hidden
test code.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from queue import Empty
from typing import Any

from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, Execute
from traitlets import Bool, Float, List

from course_utils.grader.guard import MSG_TYPE

__all__ = ["INCIDENTS", "GuardedExecute", "HideHiddenTests", "Incident"]


@dataclass(frozen=True)
class Incident:
    """Something the grader did or saw while running one notebook."""

    kind: str  # timeout, kernel-died, tampered, tamper-undone, partial-credit, memory, grader-error
    cell: str
    detail: str


INCIDENTS: list[Incident] = []
# Seconds spent per phase of the last notebook run (kernel start, cells), for the benchmark.
TIMINGS: dict[str, float] = {}


def _error_output(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                        traceback=[f"{ename}: {evalue}"])


def _cell_name(cell: NotebookNode, index: int) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index}"


def _is_graded_code(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell)


class GuardedExecute(Execute):  # type: ignore[misc]
    """nbgrader's Execute with the guard, kill-on-stuck and dead-kernel handling."""

    guard = Bool(True, help="Restore and verify the protected state around graded cells.").tag(
        config=True)
    bindings = List([], help="[name, module, attr] bound by the setup cell.").tag(config=True)
    kill_grace = Float(10.0, help="Seconds an interrupted cell may take to stop.").tag(config=True)
    guard_timeout = Float(60.0, help="Seconds to wait for the kernel guard.").tag(config=True)
    partial_credit = Bool(False, help="Honour execute_result partial credit in graded cells.").tag(
        config=True)

    def preprocess(self, nb: NotebookNode, resources: Any, km: Any = None) -> Any:
        self._stopped: str | None = None
        self._timed_out = False
        self.iopub_timeout = int(max(1, self.kill_grace))
        self.shutdown_kernel = "immediate"
        self._started = time.perf_counter()
        TIMINGS.clear()
        try:
            return super().preprocess(nb, resources, km)
        finally:
            TIMINGS["execute"] = time.perf_counter() - self._started

    def _tick(self, key: str, since: float) -> None:
        TIMINGS[key] = TIMINGS.get(key, 0.0) + time.perf_counter() - since

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> Any:
        self._check_assign_resources(resources)
        cell = run_sync(self._run_cell)(cell, index)
        return cell, self.resources

    # -- helpers ---------------------------------------------------------------------------
    def _record(self, kind: str, cell: str, detail: str) -> None:
        INCIDENTS.append(Incident(kind, cell, detail))

    async def _async_handle_timeout(self, timeout: int, cell: NotebookNode | None = None) -> Any:
        self._timed_out = True
        return await super()._async_handle_timeout(timeout, cell)

    def _returncode(self) -> int | None:
        provisioner = getattr(self.km, "provisioner", None)
        getter = getattr(provisioner, "returncode", None)
        return getter() if callable(getter) else None

    async def _kill(self) -> None:
        try:
            await self.km.kill_kernel()
        except Exception:  # noqa: BLE001 - already gone is fine
            pass

    def _stop(self, reason: str) -> None:
        if self._stopped is None:
            self._stopped = reason

    async def _guard(self, action: str) -> list[str] | None:
        """Send a guard request; the reported changes, or None if the kernel did not answer."""
        assert self.kc is not None
        msg = self.kc.session.msg(MSG_TYPE, {"action": action, "bindings": list(self.bindings)})
        self.kc.shell_channel.send(msg)
        deadline = asyncio.get_running_loop().time() + self.guard_timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or not await self.km.is_alive():
                return None
            try:
                reply = await self.kc.shell_channel.get_msg(timeout=min(remaining, 1.0))
            except Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                return list(reply["content"].get("changes", []))

    # -- one cell ---------------------------------------------------------------------------
    async def _run_cell(self, cell: NotebookNode, index: int) -> NotebookNode:
        if cell.cell_type != "code" or not cell.source.strip():
            return cell
        name = _cell_name(cell, index)
        if self._stopped is not None:
            cell.outputs = [_error_output("KernelDied", f"not run: {self._stopped}")]
            return cell
        if "kernel_start" not in TIMINGS:
            TIMINGS["kernel_start"] = time.perf_counter() - self._started
        mark = time.perf_counter()
        try:
            return await self._run_cell_timed(cell, index, name)
        finally:
            self._tick("cells", mark)
            self._tick(f"cell:{name}", mark)

    async def _run_cell_timed(self, cell: NotebookNode, index: int, name: str) -> NotebookNode:
        graded = _is_graded_code(cell)
        if graded and self.guard:
            mark = time.perf_counter()
            changes = await self._guard("restore")
            self._tick("guard", mark)
            if changes is None:
                await self._kill()
                self._stop(f"the kernel stopped answering before cell {name!r}")
                self._record("kernel-died", name, self._stopped or "")
                cell.outputs = [_error_output("KernelDied", f"not run: {self._stopped}")]
                return cell
            if changes:
                self._record("tamper-undone", name, "; ".join(changes))
        self._timed_out = False
        try:
            await self.async_execute_cell(cell, index, execution_count=self.code_cells_executed + 1)
        except DeadKernelError:
            reason = f"the kernel died in cell {name!r} ({self._death()})"
            self._stop(reason)
            self._record("kernel-died", name, reason)
            cell.outputs.append(_error_output("KernelDied", reason))
            return cell
        except CellTimeoutError:
            await self._kill()
            reason = (f"cell {name!r} ran past the {self.timeout} s timeout and did not stop "
                      "when interrupted; the kernel was killed")
            self._stop(reason)
            self._record("timeout", name, reason)
            cell.outputs.append(_error_output("CellTimeoutError", reason))
            return cell
        if self._timed_out:
            self._record("timeout", name, f"cell {name!r} ran past the {self.timeout} s timeout "
                         "and was interrupted")
        if any(o.output_type == "error" and o.get("ename") == "MemoryError" for o in cell.outputs):
            self._record("memory", name, f"cell {name!r} hit the memory cap (MemoryError)")
        if graded:
            self._neutralise_results(cell, name)
            if self.guard:
                mark = time.perf_counter()
                changes = await self._guard("verify")
                self._tick("guard", mark)
                if changes is None:
                    await self._kill()
                    self._stop(f"the kernel stopped answering after cell {name!r}")
                    changes = ["the kernel stopped answering the integrity check"]
                if changes:
                    detail = "; ".join(changes)
                    self._record("tampered", name, f"during {name!r}: {detail}")
                    cell.outputs.append(_error_output(
                        "IntegrityError", f"the checks were tampered with while this test ran: {detail}"))
        return cell

    def _death(self) -> str:
        from course_utils.grader.kernel import describe_returncode

        return describe_returncode(self._returncode())

    def _neutralise_results(self, cell: NotebookNode, name: str) -> None:
        if self.partial_credit:
            return
        for output in cell.outputs:
            if output.output_type != "execute_result":
                continue
            text = output.get("data", {}).get("text/plain", "")
            try:
                float("".join(text) if isinstance(text, list) else text)
                self._record("partial-credit", name,
                             f"a numeric result in graded cell {name!r} was not used as a score")
            except ValueError:
                pass
            output.output_type = "display_data"
            output.pop("execution_count", None)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class HideHiddenTests(ClearHiddenTests):  # type: ignore[misc]
    """Feedback-safe graded cells: hidden regions removed, their traceback frames redacted."""

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> Any:
        if not utils.is_grade(cell) or cell.cell_type != "code":
            return cell, resources
        removed = self._remove_hidden_test_region(cell)
        if removed:
            cell.source = cell.source.rstrip("\n") + "\n# (hidden tests are not shown)"
        count = cell.get("execution_count")
        own_frame = re.compile(rf"(Cell In\s*\[{count}\]|Input In\s*\[{count}\])") if count else None
        for output in cell.get("outputs", []):
            if output.output_type != "error":
                continue
            frames = []
            for entry in output.get("traceback", []):
                plain = _ANSI.sub("", entry)
                if own_frame is not None and own_frame.search(plain):
                    frames.append(f"Cell In[{count}]: (test code not shown)")
                elif own_frame is None and removed and "Traceback" not in plain:
                    continue
                else:
                    frames.append(entry)
            output.traceback = frames
        return cell, resources
