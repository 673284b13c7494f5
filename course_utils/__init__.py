"""Helpers shared by every notebook of the PyTorch course.

Modules, one job each:

* :mod:`course_utils.runtime` - seeding, device choice, the fast/full mode switch;
* :mod:`course_utils.checks` - self-checks that explain what went wrong (a package: ``core``,
  ``tensors``, ``modules``, ``errors``, and ``diagnosis``, how a wrong result differs from the
  expected one);
* :mod:`course_utils.data` - finding, verifying and loading the data sets;
* :mod:`course_utils.plots` - image grids for the notebooks;
* :mod:`course_utils.release` - building solution notebooks and student releases;
* :mod:`course_utils.grader` - ``course grade``: autograding submissions with nbgrader, contained, on Dask;
* :mod:`course_utils.cli` - the ``course`` command.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["budget", "checks", "fast_mode", "get_device", "set_seed", "setup"]
__version__ = "0.1.0"

# The names above are loaded on first use (PEP 562), so importing the package, e.g. for
# the `course` command, does not import torch; `from course_utils import setup` works as usual.
_LAZY = {"budget": "runtime", "fast_mode": "runtime", "get_device": "runtime", "set_seed": "runtime",
         "setup": "runtime", "checks": None}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'course_utils' has no attribute {name!r}")
    module = importlib.import_module(f"course_utils.{_LAZY[name] or name}")
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
