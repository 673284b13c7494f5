"""Every option of ``course grade``, declared once: the course's config file and the command line.

* :class:`CourseGrade` holds what a course sets in its ``nbgrader_config.py``
  (``c.CourseGrade.timeout = 600``): limits, the cluster, which data is withheld.
* :class:`GradeOptions` holds one run's choices. Each field carries its command-line
  flag in its metadata, and :func:`add_flags` builds the ``course grade`` parser from
  them; a field that overrides a :class:`CourseGrade` setting (``timeout``,
  ``memory_mb``, ``network``, ``kill_grace``, ``scheduler``) takes its help text from
  that trait and means "the course's setting" when left at ``None``
  (:func:`setting`).
* :func:`load_config` reads a course's config file; :func:`course_choices` repeats
  the choices a copy of the course must keep (the tests' and the demo's courses).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Float, Integer, List, Unicode
from traitlets.config import Config, Configurable, PyFileConfigLoader

from course_utils.grader.guard import Protection

__all__ = ["CourseGrade", "GradeOptions", "add_flags", "course_choices", "course_protection", "fast_mode",
           "load_config", "options_from_args", "setting"]


class CourseGrade(Configurable):  # type: ignore[misc]
    """Limits of ``course grade``, set in the course's ``nbgrader_config.py``."""

    timeout = Integer(None, allow_none=True,
                      help="Seconds a cell may run (default: Execute.timeout, else 600).").tag(config=True)
    memory_mb = Integer(4096, help="Memory cap per kernel in MiB (RLIMIT_DATA; 0: none).").tag(
        config=True)
    kill_grace = Float(10.0, help="Seconds an interrupted cell may take to stop.").tag(config=True)
    network = Bool(False, help="Let student code use the network.").tag(config=True)
    per_assignment = Dict({}, help=(
        "assignment -> {timeout, memory_mb, submission_timeout, run_trailing_cells} overrides.")).tag(config=True)
    submission_timeout = Integer(3600, help="Seconds one notebook may run in all (0: no limit).").tag(
        config=True)
    run_trailing_cells = Bool(False, help=(
        "Also run the cells after a notebook's last graded cell, as nbgrader does. They cannot change "
        "a grade, so by default they are not run and the feedback says so.")).tag(config=True)
    disk_mb = Integer(512, help="MiB the kernel may write into its copy of the submission.").tag(config=True)
    max_processes = Integer(256, help="Processes one submission may run at once.").tag(config=True)
    in_kernel_tests = List(Unicode(), [], help=(
        "Assignments whose graded cells still run in the student's kernel under the guard, "
        "not in the judge (tests not yet written for the judge).")).tag(config=True)
    scheduler = Unicode("", help=(
        "The Dask cluster to grade on: a scheduler address (tcp://host:8786); "
        "empty or 'local': a LocalCluster sized to the machine.")).tag(config=True)
    protected_packages = List(Unicode(), ["numpy", "torch"], help=(
        "Libraries the tests rely on: in the kernel, every loaded module of them is restored before "
        "and verified after each graded cell run there (public names).")).tag(config=True)
    protected_modules = List(Unicode(), [], help=(
        "The course's own modules the tests rely on, restored and verified in full (private names "
        "too); 'package.*' is a package with every module in it, by prefix.")).tag(config=True)
    withheld = Dict({}, help=(
        "assignment -> data files its students' kernels may not read while it is graded, as "
        "'dataset:file' (e.g. {'09_cifar10': ['cifar10:test_batch']}); the judge reads them.")).tag(config=True)


def _flag(*flags: str, setting: str | None = None, **argparse_kwargs: Any) -> dict[str, Any]:
    """A field's command line: its flags and argparse settings; ``setting``: the CourseGrade trait it overrides."""
    return {"flags": flags, "setting": setting, "argparse": argparse_kwargs}


@dataclass
class GradeOptions:
    """What to grade and how: one run's choices, each with its ``course grade`` flag."""

    course_dir: Path = field(metadata=_flag(
        "course_dir", nargs="?", type=Path, default=None,
        help="course directory in nbgrader's layout (default: this repository)"))
    assignments: list[str] | None = field(default=None, metadata=_flag(
        "-a", "--assignment", action="append", metavar="NAME", help="grade only this assignment (repeatable)"))
    students: list[str] | None = field(default=None, metadata=_flag(
        "-s", "--student", action="append", metavar="ID", help="grade only this student (repeatable)"))
    workers: int | None = field(default=None, metadata=_flag(
        "-j", "--workers", type=int, help="worker processes of the LocalCluster (default: the number of cores)"))
    scheduler: str | None = field(default=None, metadata=_flag(
        "--scheduler", metavar="ADDRESS", setting="scheduler"))
    force: bool = field(default=False, metadata=_flag(
        "--force", action="store_true", help="re-grade submissions already graded"))
    timeout: int | None = field(default=None, metadata=_flag("--timeout", type=int, setting="timeout"))
    memory_mb: int | None = field(default=None, metadata=_flag("--memory-mb", type=int, setting="memory_mb"))
    network: bool | None = field(default=None, metadata=_flag(
        "--allow-network", action="store_const", const=True, setting="network"))
    kill_grace: float | None = field(default=None, metadata=_flag(
        "--kill-grace", type=float, metavar="SECONDS", setting="kill_grace"))
    sandbox: bool = field(default=True, metadata=_flag(
        "--no-sandbox", action="store_false",
        help="unlocked kernels: no namespaces, private root or cgroup (memory cap and timeouts stay; "
             "the summary and CSV say so)"))
    # None: fast only when COURSE_FAST=1 (CI); grades use full mode.
    fast: bool | None = field(default=None, metadata=_flag(
        "--fast", action="store_true",
        help="CI's smaller settings (what COURSE_FAST=1 gives): for testing, not for grades"))
    feedback: bool = field(default=True, metadata=_flag(
        "--no-feedback", action="store_false", help="skip the HTML feedback"))
    csv_path: Path | None = field(default=None, metadata=_flag(
        "--csv", type=Path, help="CSV path (default: COURSE/grades.csv)"))
    progress: bool = field(default=True, metadata=_flag("--no-progress", action="store_false",
                                                        help="no progress bar"))


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`GradeOptions` field (``dest`` is the field's name)."""
    traits = CourseGrade.class_traits()
    for option in dataclasses.fields(GradeOptions):
        spec = option.metadata
        kwargs = dict(spec["argparse"])
        if spec["setting"]:
            help_text = traits[spec["setting"]].help.rstrip(".")
            kwargs.setdefault("help", f"{help_text} (overrides c.CourseGrade.{spec['setting']})")
        flags = spec["flags"]
        if flags[0].startswith("-"):
            kwargs["dest"] = option.name
            kwargs.setdefault("default", option.default)
        if option.name == "fast":  # --fast and --full: one field, two flags
            group = parser.add_mutually_exclusive_group()
            group.add_argument("--full", dest="fast", action="store_false", default=None,
                               help="the notebooks' own settings (the default, unless COURSE_FAST=1)")
            group.add_argument(*flags, **kwargs)
            continue
        parser.add_argument(*flags, **kwargs)


def options_from_args(args: argparse.Namespace, default_course: Path) -> GradeOptions:
    """The :class:`GradeOptions` of parsed ``course grade`` flags."""
    values = {option.name: getattr(args, option.name) for option in dataclasses.fields(GradeOptions)}
    values["course_dir"] = values["course_dir"] or default_course
    return GradeOptions(**values)


def setting(options: GradeOptions, limits: CourseGrade, name: str) -> Any:
    """The run's value of ``name``: the option when given, else the course's setting."""
    value = getattr(options, name)
    return getattr(limits, name) if value is None else value


def fast_mode(options: GradeOptions) -> bool:
    """Whether kernels run in fast mode: asked for, or COURSE_FAST=1 (the tests' switch)."""
    if options.fast is not None:
        return options.fast
    return os.environ.get("COURSE_FAST", "0").strip().lower() in ("1", "true", "yes", "on")


def course_protection(limits: CourseGrade) -> Protection:
    """The guard's and the static scan's :class:`~course_utils.grader.guard.Protection` for this course."""
    return Protection.from_lists(limits.protected_packages, limits.protected_modules)


def load_config(root: Path) -> Config:
    """The course's ``nbgrader_config.py`` (an empty config when it has none)."""
    cfg = Config()
    path = root / "nbgrader_config.py"
    if path.exists():
        loader = PyFileConfigLoader(path.name, path=str(root))
        cfg.merge(loader.load_config())
    return cfg


# The course's grading choices that a copy of it (the tests' and the demo's) must keep.
_COURSE_CHOICES = ("in_kernel_tests", "withheld", "protected_packages", "protected_modules")


def course_choices(root: Path) -> str:
    """Config lines repeating the course's choices that a copy of it keeps.

    Its ``CourseDirectory.ignore`` (files never released) and its ``CourseGrade`` choices
    (judge coverage, withheld data, protected modules): the demo's and the tests' courses read
    them from here.
    """
    config = load_config(root)
    lines = [f"c.CourseDirectory.ignore = {list(config.CourseDirectory.ignore)!r}\n"] \
        if "ignore" in config.get("CourseDirectory", {}) else []
    section = config.get("CourseGrade", {})
    lines += [f"c.CourseGrade.{key} = {section[key]!r}\n" for key in _COURSE_CHOICES if key in section]
    return "".join(lines)
