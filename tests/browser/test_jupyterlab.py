"""What a student sees in JupyterLab, checked in a real browser.

JupyterLab runs on a copy of notebook 01 in a fresh work folder, and Debian's chromium (driven by
Playwright) plays the student: it types a classic wrong answer into the first exercise and reads
the self-check naming the mistake, types the right answer and reads the pass, draws a plot in a
scratch cell, and presses nbgrader's Validate button.

The test skips where playwright is not installed or no ``chromium`` is on the PATH (CI installs
it with apt). Screenshots of the key steps, and of the screen and its text at a failure, go to
``$COURSE_SCREENSHOTS`` (else ``<tmp_path>/screenshots``).
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jupytext
import pytest

try:
    from playwright.sync_api import Browser, Locator, Page, sync_playwright
    from playwright.sync_api import Error as PlaywrightError
except ImportError:
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)

from tests.jupyter_server import ROOT, Server, jupyter_server  # noqa: E402 - after the skip

pytestmark = pytest.mark.slow

NOTEBOOK = ROOT / "notebooks" / "01_numpy_backprop" / "01_numpy_backprop.ipynb"
SOLUTION_SOURCE = ROOT / "solutions" / "01_numpy_backprop" / "01_numpy_backprop.py"
MISTAKES = ROOT / "solutions" / "01_numpy_backprop" / "mistakes.py"

# The wrong answer typed first: the simulated student of mistakes.py who forgot the ReLU, and
# what the self-check prints about it (checks.check_close on h_relu names the listed mistake).
WRONG_ANSWER = "forgot-relu-and-rebinds"
WRONG_ANSWER_SAYS = ["h_relu: values do not match", "you forgot the ReLU: h_relu is still h"]
# A student's scratch cell below the self-check: the finished exercise 1, drawn inline.
PLOT_CELL = """\
# My scratch cell: the network of exercise 1 on a line of inputs.
z = np.linspace(-2, 2, 41)[:, None]
out, _ = two_layer_forward(z, np.ones((1, 1)), np.ones((1, 1)))
plt.plot(z, out)
plt.title("two_layer_forward on a line: a ReLU")
plt.show()"""

SERVER_START_S = 60
KERNEL_START_S = 90
CELL_RUN_S = 60
VALIDATE_S = 180
POLL_S = 0.25


# --------------------------------------------------------------------------------------------
# The notebook's cells, read from the files (not from the screen)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    """The first exercise of the student notebook: where it is and what is typed into it."""

    solution: int  # index of the solution cell (the one with `# YOUR CODE HERE`)
    self_check: int  # index of the first ungraded, locked code cell after it
    grade_id: str
    # First lines of the graded cells that call a function still left as a stub: Validate must
    # list these. (A graded cell whose tests are all hidden, like notebook 01's test-train,
    # passes in the student's copy, finished or not.)
    graded_unfinished: list[str]
    graded_here: str  # first line of this exercise's graded cell


def _nbgrader(cell: dict[str, Any]) -> dict[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {})


def _source(cell: dict[str, Any]) -> str:
    return "".join(cell["source"])


def _first_line(cell: dict[str, Any]) -> str:
    return _source(cell).splitlines()[0]


def _first_exercise(notebook: Path) -> Exercise:
    """Locate the first solution cell, its self-check and the graded cells in a student notebook."""
    cells = json.loads(notebook.read_text())["cells"]
    solution = next(
        i for i, c in enumerate(cells)
        if c["cell_type"] == "code" and _nbgrader(c).get("solution") and "# YOUR CODE HERE" in _source(c)
    )
    self_check = next(
        i for i, c in enumerate(cells)
        if i > solution and c["cell_type"] == "code"
        and not _nbgrader(c).get("grade") and not _nbgrader(c).get("solution")
    )
    graded = [i for i, c in enumerate(cells) if _nbgrader(c).get("grade") and c["cell_type"] == "code"]
    here = next(i for i in graded if i > solution)
    stubs = {
        name
        for i, c in enumerate(cells)
        if i != solution and _nbgrader(c).get("solution") and "raise NotImplementedError()" in _source(c)
        for name in re.findall(r"^def (\w+)\(", _source(c), re.M)
    }
    return Exercise(
        solution=solution,
        self_check=self_check,
        grade_id=_nbgrader(cells[solution])["grade_id"],
        graded_unfinished=[
            _first_line(cells[i]) for i in graded
            if i != here and any(re.search(rf"\b{name}\(", _source(cells[i])) for name in stubs)
        ],
        graded_here=_first_line(cells[here]),
    )


def _correct_answer(grade_id: str) -> str:
    """The solution cell `grade_id` of the instructor's source, without the solution markers."""
    source = jupytext.read(SOLUTION_SOURCE)
    cell = next(c for c in source.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    markers = {"### BEGIN SOLUTION", "### END SOLUTION"}
    return "\n".join(ln for ln in cell.source.splitlines() if ln.strip() not in markers).strip("\n")


def _wrong_answer(grade_id: str) -> str:
    """The code the simulated student WRONG_ANSWER of mistakes.py submits for `grade_id`."""
    mistakes = runpy.run_path(str(MISTAKES))["MISTAKES"]
    return mistakes[WRONG_ANSWER]["replace"][grade_id].strip("\n")


def _code_lines(text: str) -> list[str]:
    """Non-blank lines without trailing spaces: how two renderings of one source compare."""
    return [ln.rstrip() for ln in text.replace("\u00a0", " ").splitlines() if ln.strip()]


# --------------------------------------------------------------------------------------------
# JupyterLab, as a subprocess
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# The student's screen
# --------------------------------------------------------------------------------------------


class StudentScreen:
    """The notebook open in JupyterLab's main area, and what a student does with mouse and keyboard."""

    def __init__(self, page: Page, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.dismissed: list[str] = []  # the popups closed on the way, for failure messages

    @property
    def notebook(self) -> Locator:
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")

    def cell(self, index: int) -> Locator:
        return self.notebook.locator(".jp-Cell").nth(index)

    def wait_until(self, what: str, predicate: Callable[[], bool], timeout: float, seen: Callable[[], str]) -> None:
        """Poll `predicate` (dismissing popups) until it holds; else fail saying what was on screen."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"Waited {timeout:.0f} s for {what}. On screen instead:\n{seen()}")
            self.dismiss_popups()
            self.page.wait_for_timeout(POLL_S * 1000)

    def status_bar(self) -> str:
        return self.page.locator("#jp-main-statusbar").inner_text()

    def open(self, lab: Server, name: str, cells: int) -> None:
        """Open `name` in JupyterLab and wait for its `cells` cells and an idle kernel."""
        self.page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}")
        self.wait_until(
            f"the notebook's {cells} cells", lambda: self.notebook.locator(".jp-Cell").count() == cells,
            KERNEL_START_S, lambda: f"{self.notebook.locator('.jp-Cell').count()} cells",
        )
        self.wait_until(
            "the kernel to be idle (status bar '| Idle')", lambda: "| Idle" in self.status_bar(),
            KERNEL_START_S, self.status_bar,
        )
        self.dismiss_popups()

    def dismiss_popups(self) -> None:
        """Close what JupyterLab pops up over the notebook: the news prompt, other toasts, kernel choice."""
        popups: list[tuple[Locator, Locator]] = []
        for dialog in self.page.locator(".jp-Dialog").all():
            if dialog.is_visible() and "Select Kernel" in dialog.inner_text():
                popups.append((dialog, dialog.locator(".jp-mod-accept")))  # keep the proposed kernel
        # A toast still on screen after its button was clicked is sliding out: leave it be.
        for toast in self.page.locator(".jp-toastContainer .Toastify__toast:not([class*='exit'])").all():
            no = toast.get_by_role("button", name="No", exact=True)  # "...notified about Jupyter news?"
            popups.append((toast, no if no.count() else toast.locator(".Toastify__close-button, .jp-toast-close")))
        for popup, button in popups:
            if not (popup.is_visible() and button.count()):
                continue
            try:
                text = popup.inner_text(timeout=1000)
                button.first.click(timeout=2000)
            except PlaywrightError:
                continue  # it went away by itself while we looked
            if text not in self.dismissed:
                self.dismissed.append(text)

    def select(self, index: int) -> None:
        """Click a cell's prompt area: the cell is selected, in command mode."""
        cell = self.cell(index)
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputPrompt").first.click()
        self.page.keyboard.press("Escape")

    def prompt(self, index: int) -> str:
        return self.cell(index).locator(".jp-InputPrompt").first.inner_text().strip()

    def outputs(self, index: int) -> str:
        area = self.cell(index).locator(".jp-OutputArea")
        return area.first.inner_text() if area.count() else ""

    def run(self, first: int, last: int) -> None:
        """Shift+Enter through cells first..last and wait until `last` has a new execution count."""
        before = self.prompt(last)
        self.select(first)
        for _ in range(last - first + 1):
            self.page.keyboard.press("Shift+Enter")
        self.wait_executed(last, before)

    def wait_executed(self, index: int, before: str) -> None:
        def done() -> bool:
            prompt = self.prompt(index)
            return bool(re.fullmatch(r"\[\d+\]:", prompt)) and prompt != before

        self.wait_until(
            f"cell {index} to run (its prompt was {before!r})", done, CELL_RUN_S,
            lambda: f"prompt {self.prompt(index)!r}, status bar {self.status_bar()!r}, "
            f"outputs:\n{self.outputs(index)}",
        )

    def type_into(self, index: int, text: str) -> None:
        """Click into a cell's editor, select all, and type `text` over it (as one paste-like input)."""
        editor = self.cell(index).locator(".cm-content")
        editor.scroll_into_view_if_needed()
        editor.click()
        self.page.keyboard.press("Control+a")
        # insert_text enters the text like a paste: typing key by key would let CodeMirror
        # auto-indent every new line and close every bracket a second time.
        self.page.keyboard.insert_text(text)
        shown = editor.inner_text()
        assert _code_lines(shown) == _code_lines(text), (
            f"Typed into cell {index}:\n{text}\n\nbut its editor shows:\n{shown}"
        )

    def shot(self, name: str, index: int | None = None) -> Path:
        """Screenshot the window, after scrolling cell `index`'s outputs into view."""
        if index is not None:
            target = self.cell(index).locator(".jp-OutputArea")
            (target if target.count() else self.cell(index)).first.scroll_into_view_if_needed()
            self.page.wait_for_timeout(300)  # let the scroll settle before the picture
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


@contextmanager
def _evidence_on_failure(screen: StudentScreen, lab: Server) -> Iterator[None]:
    """On a failed step, save a screenshot and the page's text, and name them in the message."""
    try:
        yield
    except (AssertionError, PlaywrightError) as exc:
        saved = [screen.shots / "failure.png", screen.shots / "failure.txt"]
        try:
            screen.page.screenshot(path=str(saved[0]))
            saved[1].write_text(screen.page.locator("body").inner_text())
        except PlaywrightError as shot_error:
            saved = [Path(f"(could not capture the page: {shot_error})")]
        popups = "\n".join(screen.dismissed) or "none"
        raise AssertionError(
            f"{exc}\n\nWhat the browser showed: {', '.join(map(str, saved))} (folder {screen.shots}).\n"
            f"Popups dismissed on the way: {popups}\nJupyterLab's log ({lab.log}) ends:\n{lab.log_tail(15)}"
        ) from exc


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no `chromium` on the PATH (CI installs it with apt: see .ci/run)")
    return path


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("COURSE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A student's work folder: the released notebook 01 and the course's nbgrader config."""
    folder = tmp_path / "work"
    folder.mkdir()
    shutil.copy(NOTEBOOK, folder / NOTEBOOK.name)
    shutil.copy(ROOT / "nbgrader_config.py", folder / "nbgrader_config.py")
    return folder


@pytest.fixture
def lab(chromium: str, work: Path) -> Iterator[Server]:
    """JupyterLab on the work folder, as a student starts it (isolated from this machine's settings)."""
    with jupyter_server(work, app="lab", startup_s=SERVER_START_S) as server:
        yield server


@pytest.fixture
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def screen(browser: Browser, shots: Path) -> Iterator[StudentScreen]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    try:
        yield StudentScreen(context.new_page(), shots)
    finally:
        context.close()


# --------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------


def test_student_fixes_exercise_1_and_validates_in_jupyterlab(lab: Server, screen: StudentScreen) -> None:
    """In JupyterLab, does a student who types a classic wrong answer see the self-check name the
    mistake, see it pass after typing the right answer, see an inline plot, and get a Validate
    dialog that lists the exercises still unfinished (and not the one they did)?"""
    notebook = lab.root / NOTEBOOK.name
    exercise = _first_exercise(notebook)
    wrong, correct = _wrong_answer(exercise.grade_id), _correct_answer(exercise.grade_id)
    assert exercise.graded_unfinished, "notebook 01 should have graded cells that call the later exercises"
    page = screen.page

    with _evidence_on_failure(screen, lab):
        screen.open(lab, notebook.name, cells=len(json.loads(notebook.read_text())["cells"]))
        shown = screen.cell(exercise.solution).locator(".cm-content").inner_text()
        assert "# YOUR CODE HERE" in shown and "raise NotImplementedError()" in shown, (
            f"cell {exercise.solution} should be the first exercise's stub, but shows:\n{shown}"
        )

        # 1. The wrong answer: the self-check names the mistake.
        screen.type_into(exercise.solution, wrong)
        screen.run(0, exercise.self_check)
        said = screen.outputs(exercise.self_check)
        missing = [text for text in WRONG_ANSWER_SAYS if text not in said]
        assert not missing, (
            f"After the wrong answer ({WRONG_ANSWER}), the self-check should say {missing}; it shows:\n{said}"
        )
        screen.shot("01-self-check-names-the-mistake", exercise.self_check)

        # 2. The right answer: the self-check passes.
        screen.type_into(exercise.solution, correct)
        screen.run(exercise.solution, exercise.self_check)
        said = screen.outputs(exercise.self_check)
        assert "squared_error: passed" in said and "Error" not in said, (
            f"After the solution's answer, every self-check should pass; the output shows:\n{said}"
        )
        screen.shot("02-self-check-passes", exercise.self_check)

        # 3. A plot, drawn inline in a scratch cell below the self-check.
        screen.select(exercise.self_check)
        page.keyboard.press("b")
        scratch = exercise.self_check + 1
        screen.type_into(scratch, PLOT_CELL)
        before = screen.prompt(scratch)
        page.keyboard.press("Shift+Enter")
        screen.wait_executed(scratch, before)
        image = screen.cell(scratch).locator('.jp-OutputArea [data-mime-type="image/png"] img')
        screen.wait_until(
            "an image/png output under the scratch cell", lambda: image.count() > 0, CELL_RUN_S,
            lambda: f"outputs (an Agg backend would print a warning instead):\n{screen.outputs(scratch)}",
        )
        width = image.first.evaluate("img => img.complete ? img.naturalWidth : 0")
        assert width > 100, f"the plot's <img> has natural width {width}: it did not render"
        screen.shot("03-plot", scratch)

        # 4. Validate: nbgrader saves, runs the notebook in a new kernel, and lists the failures.
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) jp-button.validate-button").click()
        dialog = page.locator(".jp-Dialog")
        screen.wait_until(
            "nbgrader's Validate dialog", lambda: dialog.count() > 0 and dialog.first.is_visible(), VALIDATE_S,
            lambda: "the Validate button reads "
            + repr(page.locator(".validate-button").first.inner_text()),
        )
        title = dialog.locator(".jp-Dialog-header").first.inner_text()
        message = dialog.locator("#validation-message")
        text = message.first.inner_text() if message.count() else dialog.first.inner_text()
        screen.shot("04-validate-dialog")
        assert title == "Validation Results" and message.count(), (
            f"Validate should open 'Validation Results'; it opened {title!r}:\n{text}"
        )
        assert "validation-failed" in (message.first.get_attribute("class") or ""), (
            f"With exercises 2-4 unfinished, Validate should report failed cells; its dialog says:\n{text}"
        )
        expected = ["The following cell failed:", "NotImplementedError", *exercise.graded_unfinished]
        missing = [line for line in expected if line not in text]
        assert not missing, f"The Validate dialog should name {missing}; it says:\n{text}"
        assert exercise.graded_here not in text, (
            f"The finished exercise's graded cell ({exercise.graded_here!r}) should pass, "
            f"but the Validate dialog lists it:\n{text}"
        )
        dialog.locator(".jp-mod-accept").first.click()

        # What Validate saved is what the student typed.
        saved = json.loads(notebook.read_text())["cells"][exercise.solution]
        assert _code_lines("".join(saved["source"])) == _code_lines(correct), (
            f"The saved notebook's cell {exercise.solution} should hold the typed answer, but holds:\n"
            + "".join(saved["source"])
        )
