"""The `course` command starts without importing the heavy libraries it does not need."""

from __future__ import annotations

import subprocess
import sys


def test_cli_and_package_import_without_torch():
    code = ("import sys, course_utils, course_utils.cli; "
            "print(sorted(m for m in ('torch', 'torchvision', 'jupytext') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"`course --help` would import {out.strip()}"


def test_lazy_package_names_still_work():
    code = ("from course_utils import budget, checks, setup; import course_utils; "
            "assert checks.__name__ == 'course_utils.checks' and callable(setup) and callable(budget); "
            "assert 'fast_mode' in dir(course_utils)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_texts_are_plain_text():
    """Does `course --help` (and every subcommand's) read without reST markup such as ``x`` or :func:?"""
    for args in ([], ["sync"], ["release"], ["fetch"], ["doctor"], ["grade"]):
        result = subprocess.run([sys.executable, "-m", "course_utils", *args, "--help"],
                                capture_output=True, text=True, check=True)
        for markup in ("``", ":func:", ":class:", ":mod:"):
            assert markup not in result.stdout, f"course {' '.join(args)} --help shows {markup!r}"
