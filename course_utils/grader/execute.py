"""nbgrader preprocessors of the grader: contained execution and safe feedback.

:class:`GuardedExecute` replaces nbgrader's ``Execute`` in autograding. It runs
the notebook exactly as nbgrader does (same client, same outputs, same grading
by ``SaveAutoGrades``) and adds:

* **restore and verify** around every graded cell through the kernel guard
  (:mod:`course_utils.grader.guard`): tampering from earlier cells is undone
  before the test runs; tampering while the test runs adds an ``IntegrityError``
  output to the cell, so nbgrader scores it zero, and so are the graded cells after
  it: a kernel that changed the checks while a test ran (from a thread, a hook or a
  function the test calls) can do so again, and whether a later short test catches
  it is down to scheduling;
* **containment**: a cell past the timeout is interrupted; a kernel that does not
  stop within ``kill_grace`` seconds is killed. A kernel that dies (``os._exit``,
  a segfault, the memory cap) or is killed costs the submission only the cells it
  could not run: each gets a ``KernelDied`` error output (zero points) and the
  notebook is still saved and graded;
* **no work that cannot change a grade**: cells after the notebook's last graded cell (an
  ungraded demo, a student's scratch cells) are not run unless ``run_trailing``; each gets a
  note saying why, so the feedback shows it;
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
import contextlib
import os
import re
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from queue import Empty
from typing import Any

from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, Execute
from traitlets import Bool, Dict, Float, Integer, List

from course_utils.grader import upstream
from course_utils.grader.guard import MSG_TYPE

__all__ = ["INCIDENTS", "TRAILING_NOTE", "GuardedExecute", "HideHiddenTests", "Incident", "last_graded_index"]


@dataclass(frozen=True)
class Incident:
    """Something the grader did or saw while running one notebook."""

    kind: str  # timeout, kernel-died, tampered, tamper-undone, partial-credit, memory, grader-error
    cell: str
    detail: str


INCIDENTS: list[Incident] = []
# The judge's verdict on each graded cell of the last notebook run (grade_id -> passed).
VERDICTS: dict[str, bool] = {}
# Seconds spent per phase of the last notebook run (kernel start, cells), for the benchmark.
TIMINGS: dict[str, float] = {}


def _error_output(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                        traceback=[f"{ename}: {evalue}"])


def _cell_name(cell: NotebookNode, index: int) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index}"


def _content_size(value: Any, depth: int = 0) -> int:
    """About how many bytes a message's content holds (its strings, without copying them)."""
    if isinstance(value, str):
        return len(value)
    if depth > 8:
        return 0
    if isinstance(value, dict):
        return sum(_content_size(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_content_size(v, depth + 1) for v in value)
    return 8


def _scrub_text(text: Any, paths: list[str]) -> Any:
    if isinstance(text, list):
        return [_scrub_text(t, paths) for t in text]
    if not isinstance(text, str):
        return text
    for path in paths:
        text = text.replace(path, "<grader>")
    return text


def _scrub(cell: NotebookNode, paths: list[str]) -> None:
    """Replace the grading machine's paths in ``cell``'s outputs (tracebacks, warnings, prints)."""
    if not paths:
        return
    for output in cell.get("outputs", []):
        for key in ("text", "evalue", "traceback"):
            if key in output:
                output[key] = _scrub_text(output[key], paths)
        data = output.get("data", {})
        if "text/plain" in data:
            data["text/plain"] = _scrub_text(data["text/plain"], paths)


TRAILING_NOTE = ("[not run by the autograder: this cell comes after the notebook's last graded "
                 "cell, so it cannot change the grade. Your own run of the notebook shows its output.]\n")


def last_graded_index(nb: NotebookNode) -> int:
    """Index of ``nb``'s last graded cell (a test, a manually graded answer or a task).

    The roles are the source's by then (:func:`~course_utils.grader.cells.sanitize` ran), so a
    submission cannot mark a cell graded to make more run. With no graded cell, every cell runs.
    """
    graded = [i for i, c in enumerate(nb.cells) if utils.is_grade(c) or utils.is_task(c)]
    return graded[-1] if graded else len(nb.cells)


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
    judge = Bool(True, help="Run graded cells in the judge, outside the kernel (else in the kernel, "
                 "under the guard).").tag(config=True)
    tests = Dict({}, help="grade_id -> the graded cell's source from the gradebook (hidden tests "
                 "included): what the judge runs.").tag(config=True)
    socket_dir = List([], help="[folder] for the judge's sockets, one the kernel can reach.").tag(
        config=True)
    scrub_paths = List([], help="Paths of the grading machine to hide from every output.").tag(
        config=True)
    max_output_cell = Integer(1_000_000, help="Bytes of output kept per cell.").tag(config=True)
    max_output_notebook = Integer(10_000_000, help="Bytes of output kept per notebook.").tag(config=True)
    submission_timeout = Float(0.0, help="Seconds the whole notebook may run (0: no limit).").tag(
        config=True)
    run_trailing = Bool(False, help="Also run the cells after the last graded cell (they cannot "
                        "change a grade; nbgrader runs them).").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: Any, km: Any = None) -> Any:
        self._stopped: str | None = None
        self._caught: str | None = None  # the first graded cell during which the checks changed
        self._timed_out = False
        self.iopub_timeout = int(max(1, self.kill_grace))
        self.shutdown_kernel = "immediate"
        self._started = time.perf_counter()
        self._namespace: dict[str, Any] | None = None
        self._cell_timeout = self.timeout
        self._kept = {"cell": 0, "notebook": 0, "capped": 0}
        self._cell_starts: dict[str, float] = {}  # grade_id -> when this cell started (seconds_since)
        self._cell_log = upstream.CellLog()  # what each cell defined and whether it failed
        self._last_graded = len(nb.cells) if self.run_trailing else last_graded_index(nb)
        TIMINGS.clear()
        VERDICTS.clear()
        try:
            return super().preprocess(nb, resources, km)
        finally:
            TIMINGS["execute"] = time.perf_counter() - self._started

    def output(self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None,
               cell_index: int) -> NotebookNode | None:
        """nbclient's output handler, with byte caps per cell and per notebook."""
        content = msg.get("content", {})
        size = _content_size(content)
        room = min(self.max_output_cell - self._kept["cell"],
                   self.max_output_notebook - self._kept["notebook"])
        if size <= room:
            self._kept["cell"] += size
            self._kept["notebook"] += size
            return super().output(outs, msg, display_id, cell_index)
        kept = None
        if msg.get("msg_type") == "stream" and room > 0 and isinstance(content.get("text"), str):
            content["text"] = content["text"][:room]  # what fits; the note says the rest is gone
            self._kept["cell"] += room
            self._kept["notebook"] += room
            kept = super().output(outs, msg, display_id, cell_index)
        if not self._kept["capped"]:
            self._kept["capped"] = 1
            outs.append(NotebookNode(output_type="stream", name="stdout", text=(
                f"\n[more output than the grader keeps ({self.max_output_cell} bytes per cell, "
                f"{self.max_output_notebook} per notebook): the rest is not shown]\n")))
        return kept

    async def async_start_new_kernel_client(self) -> Any:
        """nbclient's kernel client, made to drop messages whose signature does not verify."""
        kc = await super().async_start_new_kernel_client()
        for channel in (kc.iopub_channel, kc.shell_channel):
            channel.get_msg = self._tolerant(channel.get_msg)
        return kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    def _tolerant(self, get_msg: Any) -> Any:
        async def get_verified_msg(*args: Any, **kwargs: Any) -> Any:
            while True:
                try:
                    return await get_msg(*args, **kwargs)
                except ValueError as err:  # forged or corrupted by the kernel: never trusted
                    if not any(i.kind == "forged-messages" for i in INCIDENTS):
                        self._record("forged-messages", "kernel",
                                     f"the kernel sent messages that failed the signature check ({err}"[:120]
                                     + "); they were dropped")

        return get_verified_msg

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
        if index > self._last_graded:
            cell.outputs = [NotebookNode(output_type="stream", name="stdout", text=TRAILING_NOTE)]
            cell.execution_count = None
            return cell
        if self._stopped is not None:
            cell.outputs = [_error_output("KernelDied", f"not run: {self._stopped}")]
            return cell
        if "kernel_start" not in TIMINGS:
            TIMINGS["kernel_start"] = time.perf_counter() - self._started
        if self.submission_timeout:
            left = self.submission_timeout - (time.perf_counter() - self._started)
            if left <= 0:
                self._stop(f"the notebook ran past its {self.submission_timeout:g} s time limit")
                self._record("timeout", name, self._stopped or "")
                cell.outputs = [_error_output("CellTimeoutError", f"not run: {self._stopped}")]
                return cell
            self.timeout = max(1, int(min(self._cell_timeout or left, left)))
        self._kept["cell"] = self._kept["capped"] = 0
        self._cell_starts.setdefault(name, time.monotonic())  # a duplicate keeps its first start
        mark = time.perf_counter()
        try:
            return await self._run_cell_timed(cell, index, name)
        finally:
            self._tick("cells", mark)
            self._tick(f"cell:{name}", mark)
            _scrub(cell, self.scrub_paths)

    async def _run_cell_timed(self, cell: NotebookNode, index: int, name: str) -> NotebookNode:
        graded = _is_graded_code(cell)
        if graded and self._caught is not None:
            VERDICTS[name] = False
            cell.outputs = [_error_output("IntegrityError", (
                f"not graded: the checks were tampered with while {self._caught!r} ran, so the kernel "
                "changes them on its own and no later test can be trusted"))]
            cell.execution_count = None
            return cell
        # The guard restores before and verifies after every graded cell, judged ones too: the
        # judge's drivers run in the kernel (``checks.run_in_kernel``) and import course modules
        # there, so a module the student patched would otherwise answer for the test.
        if graded and not await self._restore(cell, name):
            return cell
        if graded and self.judge:
            mark = time.perf_counter()
            try:
                await self._judge_cell(cell, name)
            finally:
                self._tick("judge", mark)
            if self._stopped is None and not await self._verify(cell, name):
                VERDICTS[name] = False
            return cell
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
        self._cell_log.record(name, cell)
        if any(o.output_type == "error" and o.get("ename") == "MemoryError" for o in cell.outputs):
            self._record("memory", name, f"cell {name!r} hit the memory cap (MemoryError)")
        if graded:
            self._neutralise_results(cell, name)
            await self._verify(cell, name)
        return cell

    async def _ask_guard(self, action: str, name: str, when: str) -> list[str] | None:
        """The guard's ``action`` around cell ``name``, timed; None if it did not answer (kernel killed)."""
        mark = time.perf_counter()
        changes = await self._guard(action)
        self._tick("guard", mark)
        if changes is None:
            await self._kill()
            self._stop(f"the kernel stopped answering {when} cell {name!r}")
        return changes

    async def _restore(self, cell: NotebookNode, name: str) -> bool:
        """Undo any change to the protected state before graded cell ``name``; False if the kernel is gone."""
        if not self.guard:
            return True
        changes = await self._ask_guard("restore", name, "before")
        if changes is None:
            self._record("kernel-died", name, self._stopped or "")
            cell.outputs = [_error_output("KernelDied", f"not run: {self._stopped}")]
            return False
        if changes:
            self._record("tamper-undone", name, "; ".join(changes))
        return True

    async def _verify(self, cell: NotebookNode, name: str) -> bool:
        """Check the protected state after graded cell ``name``; a change made while it ran fails it."""
        if not self.guard:
            return True
        changes = await self._ask_guard("verify", name, "after")
        if changes is None:
            changes = ["the kernel stopped answering the integrity check"]
        if not changes:
            return True
        detail = "; ".join(changes)
        self._record("tampered", name, f"during {name!r}: {detail}")
        self._caught = self._caught or name
        cell.outputs.append(_error_output(
            "IntegrityError", f"the checks were tampered with while this test ran: {detail}"))
        return False

    async def _judge_cell(self, cell: NotebookNode, name: str) -> NotebookNode:
        """Run the cell's tests in the judge against the kernel; the judge's verdict is the grade."""
        from course_utils.grader import judge

        cell.outputs = []
        source = self.tests.get(name)
        if source is None:  # not a graded cell of the gradebook: nothing to judge, no points
            cell.outputs = [_error_output("GradingError", f"{name!r} is not a graded cell of this assignment")]
            return cell
        # The kernel's own socket folder when it has one (all a locked kernel sees of ours).
        folder = os.path.dirname(self.km.ip) if getattr(self.km, "transport", "") == "ipc" else \
            (self.socket_dir[0] if self.socket_dir else tempfile.gettempdir())
        path = os.path.join(folder, f"judge-{uuid.uuid4().hex[:10]}.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        os.chmod(path, 0o777)  # the kernel may run as another user
        server.listen(1)
        server.setblocking(False)
        loop = asyncio.get_running_loop()
        assert self.kc is not None
        code = f"__import__('course_utils.grader.agent', fromlist=['serve']).serve({path!r})"
        msg_id = self.kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        conn = None
        try:
            conn = await self._accept(loop, server)
            if conn is None:
                verdict = judge.Verdict(passed=False, error=(
                    "KernelError", "the kernel did not answer the grader (is it still running?)"))
                if not await self.km.is_alive():
                    verdict.incident = "kernel-died"
            else:
                conn.setblocking(True)
                own = self._own_names()  # the judge's imports: before the cell's clock starts
                provisioner = getattr(self.km, "provisioner", None)
                pid = getattr(provisioner, "pgid", None) or getattr(provisioner, "pid", None)
                link = judge.Link(conn, time.monotonic() + self.timeout, judge.interrupter(pid),
                                  grace=self.kill_grace)
                link.cell_starts = dict(self._cell_starts)
                verdict = judge.run_test(source, link, own)
                if not verdict.stuck and verdict.incident != "kernel-died":
                    link.end()
        finally:
            if conn is not None:
                conn.close()
            server.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
        VERDICTS[name] = verdict.passed
        if verdict.stuck or verdict.incident == "kernel-died":
            await self._kill()
            reason = (f"cell {name!r} ran past the {self.timeout} s timeout and did not stop when "
                      "interrupted; the kernel was killed") if verdict.stuck else \
                f"the kernel died in cell {name!r} ({self._death()})"
            self._stop(reason)
        else:
            await self._wait_reply(msg_id)
        if verdict.incident:
            self._record(verdict.incident, name, f"{name}: {verdict.error[1] if verdict.error else ''}")
        text = verdict.output + "".join(f"[{note}]\n" for note in verdict.notes)
        if text:
            cell.outputs.append(NotebookNode(output_type="stream", name="stdout", text=text))
        if not verdict.passed:
            ename, evalue = verdict.error or ("TestFailed", "the test failed")
            missing = upstream.missing_name(evalue)
            if missing:
                evalue = self._cell_log.explain(missing, asked_by_test=ename == "NameError") or evalue
            cell.outputs.append(_error_output(ename, evalue))
        cell.execution_count = None
        return cell

    def _own_names(self) -> dict[str, Any]:
        if self._namespace is None:
            from course_utils.grader.judge import judge_namespace

            self._namespace = judge_namespace(self.bindings)
        return self._namespace

    async def _accept(self, loop: asyncio.AbstractEventLoop, server: socket.socket) -> socket.socket | None:
        deadline = loop.time() + min(self.guard_timeout, float(self.timeout or 60))
        while loop.time() < deadline:
            try:
                conn, _ = await asyncio.wait_for(loop.sock_accept(server), timeout=1.0)
                return conn
            except TimeoutError:
                if not await self.km.is_alive():
                    return None
        return None

    async def _wait_reply(self, msg_id: str) -> None:
        """Wait for the kernel to finish the ``serve`` request (it returns when the judge ends)."""
        assert self.kc is not None
        deadline = asyncio.get_running_loop().time() + self.kill_grace + 5
        while asyncio.get_running_loop().time() < deadline and await self.km.is_alive():
            try:
                reply = await self.kc.shell_channel.get_msg(timeout=0.5)
            except Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                return

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
