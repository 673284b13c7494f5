"""``course_utils.checks`` as the notebooks use it: one namespace, whichever module a check lives in."""

import importlib
import pkgutil
import re

import pytest

from course_utils import checks
from course_utils.release import project_root

MODULES = sorted(info.name for info in pkgutil.iter_modules(checks.__path__))


def test_the_package_keeps_its_name_and_modules():
    """Is it still `course_utils.checks`, made of the modules the tests mirror?"""
    assert checks.__name__ == "course_utils.checks"
    assert MODULES == ["core", "diagnosis", "errors", "modules", "probes", "tensors"]


@pytest.mark.parametrize("module", [m for m in MODULES if m != "diagnosis"])
def test_every_public_name_of_a_module_is_a_name_of_the_package(module):
    """Does `checks.<name>` give each module's public checks, the same objects?"""
    mod = importlib.import_module(f"course_utils.checks.{module}")
    assert mod.__all__, module
    for name in mod.__all__:
        assert name in checks.__all__ and getattr(checks, name) is getattr(mod, name), name


def test_every_name_in_all_exists():
    assert all(hasattr(checks, name) for name in checks.__all__)


def test_every_name_the_notebooks_use_is_there():
    """Is each `checks.<name>` of the solutions, releases and benchmarks an attribute of the package?"""
    root = project_root()
    sources = [*root.glob("solutions/*/*.py"), *root.glob("notebooks/*/*.ipynb"), *root.glob("benchmarks/*.py")]
    used = set()
    for path in sources:
        used |= set(re.findall(r"\bchecks\.([A-Za-z_]\w*)", path.read_text(encoding="utf-8")))
    assert len(sources) > 10 and {"check_close", "explain_errors", "run_in_kernel"} <= used
    assert sorted(name for name in used if not hasattr(checks, name)) == []
