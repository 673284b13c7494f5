"""Helpers for graded test cells that run either in the notebook or in the grader's judge.

A graded cell's tests are ordinary Python that an instructor runs in the
solution notebook (and CI runs with nbval). When ``course grade`` grades a
submission, the same cell runs in the *judge*, a trusted process outside the
student's kernel (:mod:`course_utils.grader.judge`): names the cell does not
define are looked up in the kernel, plain values (numbers, arrays, tensors,
lists...) arrive as copies, and functions, classes and other objects arrive as
handles whose calls run in the kernel and return plain values again.

Most tests read the same either way. The few things that differ have a helper
here that does the right thing in both places:

* :func:`substitute` - run the student's code with some of its names bound to
  reference functions (so a mistake in exercise A costs points only in A);
* :func:`in_kernel` - put a value into the kernel and keep a handle to it
  (to change it there, e.g. to test that a tensor shares its memory);
* :func:`fetch` - read a value's current state from the kernel again;
* :func:`run_in_kernel` - run a small driver function of the test *in the
  kernel*, on kernel objects (build a model there, call ``backward`` through
  the student's graph, read gradients); what it returns comes back as data.
  The driver uses only its arguments and ``np``/``torch``/``nn``/``F``/``math``;
  its code is visible to the kernel, so it must not hold expected values;
* :func:`is_instance` - ``isinstance`` that also answers for a kernel object
  (from the class names the kernel reports, which the student controls: a
  test that relies on it says so);
* :func:`seconds_since` - wall time since a cell started, measured by the grader
  (a time limit the kernel's own clock cannot fake);
* :func:`secret_order` - a permutation the kernel cannot predict (to send a test
  set in an order no memorised answer list matches).

In a notebook (no judge) each helper is the plain-Python equivalent.
"""

from __future__ import annotations

import inspect
import secrets
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["current_link", "driver_function", "fetch", "in_kernel", "is_instance", "run_in_kernel",
           "secret_order", "seconds_since", "substitute"]

_LINK: list[Any] = []  # the judge's connection to the kernel while it runs a test cell


def current_link() -> Any:
    """The judge's link to the kernel, or None when running in a notebook."""
    return _LINK[-1] if _LINK else None


@contextmanager
def substitute(**replacements: Any) -> Iterator[None]:
    """Bind the notebook's names to ``replacements`` for the duration of the block.

    ``with substitute(forward=reference_forward): train(...)`` makes the student's
    ``train`` call ``reference_forward``. Under the judge the replacement runs in
    the judge and the student's code calls it across the boundary.
    """
    link = current_link()
    if link is not None:
        with link.substitute(replacements):
            yield
        return
    namespace = sys._getframe(2).f_globals  # the test cell's namespace (contextmanager adds a frame)
    missing = object()
    saved = {name: namespace.get(name, missing) for name in replacements}
    namespace.update(replacements)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def in_kernel(value: Any) -> Any:
    """``value`` placed in the student's kernel, as a handle there (itself in a notebook)."""
    link = current_link()
    return value if link is None else link.keep(value)


def run_in_kernel(driver: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``driver(*args, **kwargs)``, run in the student's kernel under the judge.

    Objects from the kernel passed as arguments are the kernel's own (graphs,
    parameters and identities intact); the result comes back as data (or a
    handle). In a notebook it is a plain call.
    """
    link = current_link()
    if link is not None:
        return link.run(driver, args, kwargs)
    if (getattr(driver, "__module__", "") or "").startswith("course_utils."):
        return driver(*args, **kwargs)  # a helper of the course: the kernel calls its own copy
    try:  # the same namespace as under the judge, so a driver that works here works there
        source = textwrap.dedent(inspect.getsource(driver))
    except (OSError, TypeError):
        return driver(*args, **kwargs)
    return driver_function(source, driver.__name__)(*args, **kwargs)


def driver_function(source: str, name: str) -> Callable[..., Any]:
    """The function ``name`` defined by ``source`` in a namespace holding only the usual modules.

    Drivers see ``np``, ``torch``, ``nn``, ``F`` and ``math`` and nothing of the notebook or
    the test, in a notebook and in the kernel alike.
    """
    import math

    import numpy as np
    import torch

    namespace: dict[str, Any] = {"np": np, "torch": torch, "nn": torch.nn, "F": torch.nn.functional,
                                 "math": math, "__name__": "__test_driver__"}
    exec(compile(source, "<test driver>", "exec"), namespace)  # noqa: S102 - the instructor's driver
    return namespace[name]


def fetch(value: Any) -> Any:
    """``value`` with its current state read from the kernel again (itself in a notebook)."""
    link = current_link()
    return value if link is None else link.fetch(value)


def is_instance(value: Any, cls: type | tuple[type, ...]) -> bool:
    """``isinstance(value, cls)``; for a kernel object, by the class names it reports."""
    link = current_link()
    if link is not None and link.is_handle(value):
        classes = cls if isinstance(cls, tuple) else (cls,)
        return any(link.reports_class(value, c) for c in classes)
    return isinstance(value, cls)


def seconds_since(grade_id: str, fallback: float) -> float:
    """Seconds from the start of cell ``grade_id`` to now, by the grader's clock.

    Under the judge the grader timed every cell from outside the kernel; in a
    notebook (no grader) it is ``fallback``, the notebook's own measurement.
    A cell the grader did not run raises a TestError.
    """
    link = current_link()
    if link is None:
        return float(fallback)
    started = getattr(link, "cell_starts", {}).get(grade_id)
    if started is None:
        from course_utils.grader.judge import TestError

        raise TestError(f"the grader did not run the cell {grade_id!r}, so it cannot time what follows it")
    return time.monotonic() - started


def secret_order(n: int) -> Any:
    """A random permutation of ``range(n)`` (int64 tensor) from the operating system's entropy.

    Nothing in the kernel can predict it: the seed is not the process's (fixed) default.
    """
    import torch

    generator = torch.Generator().manual_seed(secrets.randbits(63))
    return torch.randperm(n, generator=generator)
