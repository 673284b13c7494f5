"""Say how a wrong result differs from the expected one, for mistakes nobody listed.

:func:`~course_utils.checks.check_close` names the mistakes a notebook lists by
value; this module recognises the classic ones by their *shape* in the numbers:
a constant factor (a sum where a mean is expected), a flipped sign, swapped axes,
values reshaped in the wrong order, a trajectory shifted by one step, a ReLU too
many or too few, an update never applied, a few wrong rows, NaN and inf, and
shapes or dtypes that betray a missing ``keepdim`` or an integer division.

Each signature is a row of a table: a test, and the student-facing sentence it
earns. A test returns ``None``/``False`` when its signature does not hold, and
``True`` or the fields its sentence needs when it does; a test that raises is
skipped. Numbers are compared with the check's own ``rtol``/``atol``, in the
scale of the expected result, so a diagnosis is only named when it holds.

* :func:`diagnose` - every diagnosis for a result, most specific first;
* :func:`diagnose_shape` - what a wrong shape suggests;
* :func:`diagnose_dtype` - what a wrong dtype suggests;
* :func:`format_diagnoses` - the diagnoses as the tail of a check's message.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = ["diagnose", "diagnose_dtype", "diagnose_shape", "format_diagnoses"]

Shape = tuple[int, ...]

_MAX_LISTED = 5  # row or column indices named in one sentence
_MAX_PERMUTED_AXES = 4  # axis permutations are tried up to this many axes (4! = 24)
_PRECISION = 1e3  # differences up to this many machine epsilons count as rounding
_GROWTH = 10.0  # a trajectory that grew this much before turning NaN diverged


class _Signature(NamedTuple):
    """One row of a table: ``test(*subject)`` and the sentence it earns (a template for its fields)."""

    test: Callable[..., Mapping[str, object] | bool | None]
    message: str


def _sentences(table: Iterable[_Signature], *subject: Any, first_only: bool = False) -> list[str]:
    """The messages of the signatures in ``table`` that hold for ``subject``, in table order."""
    found: list[str] = []
    for signature in table:
        try:
            fields = signature.test(*subject)
            if not fields:
                continue
            found.append(signature.message.format(**fields) if isinstance(fields, Mapping) else signature.message)
        except Exception:  # a signature that cannot be tested on these values is no diagnosis
            continue
        if first_only:
            break
    return found


def _number(value: float) -> str:
    """``64``, ``3.2``, ``1/64``: a factor as a student would write it."""
    if value != 0 and abs(value) < 1 and abs(1 / value - round(1 / value)) < 1e-6 * abs(1 / value):
        return f"{'-' if value < 0 else ''}1/{abs(round(1 / value))}"
    return f"{value:.3g}"


def _axes(order: Sequence[int]) -> str:
    """``(1, 0)``, ``(4,)``: an axis order or a shape as Python writes it."""
    return str(tuple(int(i) for i in order))


def _inverse(order: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(order))


# --- shapes -------------------------------------------------------------------------------


def _axis_order(got: Shape, expected: Shape) -> tuple[int, ...]:
    """An order with ``got == tuple(expected[i] for i in order)`` (both shapes hold the same sizes)."""
    unused = list(range(len(expected)))
    order = []
    for size in got:
        axis = next(i for i in unused if expected[i] == size)
        unused.remove(axis)
        order.append(axis)
    return tuple(order)


def _without_unit_axes(shape: Shape) -> Shape:
    return tuple(n for n in shape if n != 1)


def _dropped_axis(big: Shape, small: Shape) -> int | None:
    """The axis of ``big`` whose removal leaves ``small``, if there is one."""
    if len(big) != len(small) + 1:
        return None
    return next((k for k in range(len(big)) if big[:k] + big[k + 1 :] == small), None)


def _off_by_one(got: Shape, expected: Shape) -> Mapping[str, object] | None:
    if len(got) != len(expected):
        return None
    differing = [k for k in range(len(got)) if got[k] != expected[k]]
    if len(differing) != 1 or abs(got[differing[0]] - expected[differing[0]]) != 1:
        return None
    k = differing[0]
    return {"axis": k, "count": "more" if got[k] > expected[k] else "fewer", "got": got[k], "expected": expected[k]}


def _shape_permuted(got: Shape, expected: Shape) -> Mapping[str, object] | None:
    """More than two axes, the same sizes in another order: the order, and the one that undoes it."""
    if len(got) < 3 or sorted(got) != sorted(expected):
        return None
    order = _axis_order(got, expected)
    return {"order": _axes(order), "restore": _axes(_inverse(order))}


def _broadcast_square(got: Shape, expected: Shape) -> Mapping[str, object] | None:
    """``(N, N)`` where one value per entry of an ``(N,)`` or ``(N, 1)`` vector is expected."""
    flat = _without_unit_axes(expected)
    if len(expected) > 2 or len(flat) != 1 or got != (flat[0], flat[0]):
        return None
    return {"n": flat[0]}


# (got shape, expected shape) -> fields; the first that holds is reported.
_SHAPES: tuple[_Signature, ...] = (
    _Signature(
        lambda g, e: g == () and math.prod(e) > 1 and {"expected": e},
        "a single number where shape {expected} is expected: a reduction over everything "
        "(`.sum()` / `.mean()` without `dim`), or `.item()` too early",
    ),
    _Signature(
        lambda g, e: len(g) == 2 and g == e[::-1],
        "the shape is transposed: check the order of the matrix product or a missing `.T`",
    ),
    _Signature(
        _shape_permuted,
        "the axes are in a different order: your shape is the expected one permuted as {order} (e.g. "
        "channels-last where channels-first is expected); `.permute{restore}` puts them back",
    ),
    _Signature(
        lambda g, e: len(e) == 1 and g == (e[0], 1),
        "a column (N, 1) where a flat (N,) is expected: `keepdim=True`, or an output of width 1 "
        "not squeezed: use `.squeeze(1)` or `.reshape(-1)`",
    ),
    _Signature(
        lambda g, e: len(g) == 1 and e == (g[0], 1),
        "a flat (N,) where a column (N, 1) is expected: a reduction without `keepdim=True` "
        "(or add the axis back with `[:, None]`)",
    ),
    _Signature(
        lambda g, e: _broadcast_square(g, e),
        "a matrix ({n}, {n}) where one value per entry of a vector of {n} is expected: broadcasting a column (N, 1) "
        "against a flat (N,) (e.g. `pred - y` with `pred` of shape (N, 1)), from a missing or extra "
        "`keepdim`: give both operands the same shape",
    ),
    _Signature(
        lambda g, e: _without_unit_axes(g) == _without_unit_axes(e),
        "an extra or missing axis of size 1: an `unsqueeze` / `[None]` too many or a missing "
        "`squeeze` (e.g. a batch dimension of 1)",
    ),
    _Signature(
        lambda g, e: (k := _dropped_axis(g, e)) is not None and {"axis": k, "size": g[k]},
        "your result has an extra axis {axis} of size {size}: a missing reduction over it "
        "(`.sum(dim={axis})` / `.mean(dim={axis})`), or a broadcast over an axis it should not have",
    ),
    _Signature(
        lambda g, e: (k := _dropped_axis(e, g)) is not None and {"axis": k, "size": e[k]},
        "axis {axis} (size {size}) of the expected result is missing from yours: a reduction over that "
        "axis (keep it with `keepdim=True`, or reduce over another `dim`), or indexing that dropped it",
    ),
    _Signature(
        lambda g, e: _off_by_one(g, e),
        "one entry {count} along axis {axis} ({got} instead of {expected}): an off-by-one in a loop "
        "range or a slice, e.g. a history that also records (or misses) the initial value",
    ),
    _Signature(
        lambda g, e: math.prod(g) == math.prod(e) and {"size": math.prod(e)},
        "the same {size} entries in a different shape: a `reshape` / `view` to the wrong shape, or a "
        "flatten over the wrong axes",
    ),
)


def diagnose_shape(got_shape: Iterable[int], expected_shape: Iterable[int]) -> list[str]:
    """What a result of ``got_shape`` where ``expected_shape`` is expected suggests (at most one sentence).

    Names a transpose (and for more axes, the permutation and how to undo it), a
    column ``(N, 1)`` against a flat ``(N,)`` (``keepdim``), the ``(N, N)`` of a
    broadcast, an extra or missing axis (a missing or extra reduction), an
    off-by-one length and a plain reshape. Equal shapes give ``[]``.
    """
    got, expected = tuple(int(n) for n in got_shape), tuple(int(n) for n in expected_shape)
    if got == expected:
        return []
    return _sentences(_SHAPES, got, expected, first_only=True)


# --- dtypes -------------------------------------------------------------------------------


class _DType(NamedTuple):
    """What the rules need to know of a NumPy or torch dtype."""

    name: str
    kind: str  # NumPy's kind letter: "b" bool, "i"/"u" integer, "f" floating, "c" complex
    eps: float  # machine epsilon of a floating dtype, 0 otherwise


def _dtype(dtype: object) -> _DType | None:
    """A NumPy dtype, NumPy scalar type, torch dtype or dtype name, as the rules see it; None if unknown."""
    if dtype is None:  # np.dtype(None) would be float64
        return None
    torch_name = str(dtype).removeprefix("torch.") if str(dtype).startswith("torch.") else None
    if (torch_name or dtype) == "bfloat16":
        return _DType("bfloat16", "f", 2.0**-7)
    try:
        np_dtype = np.dtype(torch_name or dtype)
    except (TypeError, ValueError):
        return None
    eps = float(np.finfo(np_dtype).eps) if np_dtype.kind == "f" else 0.0
    return _DType(np_dtype.name, np_dtype.kind, eps)


def _rounding(got: _DType, expected: _DType, error: float | None, coarser: _DType) -> bool:
    """Both floating, ``coarser`` the less precise one, and the error no more than its rounding."""
    return (
        got.kind == expected.kind == "f"
        and coarser.eps > min(got.eps, expected.eps)
        and (error is None or error <= _PRECISION * coarser.eps)
    )


# (got, expected, max relative error or None, whole numbers expected) -> holds; every rule that holds.
_DTYPES: tuple[_Signature, ...] = (
    _Signature(
        lambda g, e, error, whole: g.kind == "b" and e.kind in "iuf" and not whole,
        "your result is boolean where numbers ({expected}) are expected: a comparison (e.g. "
        "`pred == y`) left unconverted: use `.float()` (then `.mean()` for a rate)",
    ),
    _Signature(
        lambda g, e, error, whole: g.kind in "iu" and e.kind == "f" and not whole,
        "your result has an integer dtype ({got}) where floats ({expected}) are expected: integer "
        "division (`//`) or a tensor built from ints (`torch.tensor([1, 2])`) drops the fractions: "
        "convert with `.float()` before dividing",
    ),
    _Signature(
        lambda g, e, error, whole: _rounding(g, e, error, coarser=g),
        "your result is {got}, the expected one {expected}: differences this small are {got} rounding: "
        "compute in {expected} (`.to(torch.{expected})`), or the tolerance is tighter than {got} allows",
    ),
    _Signature(
        lambda g, e, error, whole: _rounding(g, e, error, coarser=e),
        "your result is {got} where {expected} is expected: convert with `.to(torch.{expected})` "
        "(NumPy arrays are float64, and `torch.from_numpy` keeps that dtype)",
    ),
)


def diagnose_dtype(
    got_dtype: object,
    expected_dtype: object,
    *,
    max_rel_error: float | None = None,
    whole_numbers_expected: bool = False,
) -> list[str]:
    """What a result of ``got_dtype`` where ``expected_dtype`` is expected suggests.

    Dtypes are NumPy or torch dtypes (or their names). Names a boolean result (an
    unconverted comparison) and an integer one where floats are expected (integer
    division, a tensor of ints), unless ``whole_numbers_expected`` says the expected
    values have no fractions to lose; and float32 against float64, only when
    ``max_rel_error`` (the largest relative difference of the values, if known) is
    small enough to be rounding.
    """
    got, expected = _dtype(got_dtype), _dtype(expected_dtype)
    if got is None or expected is None or got.name == expected.name:
        return []
    fields = {"got": got.name, "expected": expected.name}
    return [m.format(**fields) for m in _sentences(_DTYPES, got, expected, max_rel_error, whole_numbers_expected)]


# --- values -------------------------------------------------------------------------------


def _varies(a: np.ndarray, atol: float) -> bool:
    """The entries of ``a`` are not all the same value (within ``atol``)."""
    return a.size > 1 and float(np.ptp(a)) > atol


@dataclass(frozen=True)
class _Case:
    """A result and what it is compared with, plus the facts several signatures share."""

    got: np.ndarray
    expected: np.ndarray
    rtol: float
    atol: float
    initial: np.ndarray | None = None
    batch_size: int | None = None

    def matches(self, value: np.ndarray, target: np.ndarray | None = None) -> bool:
        """``value`` equals ``target`` (the expected result by default) within the check's tolerance."""
        target = self.expected if target is None else target
        return value.shape == target.shape and bool(
            np.allclose(value, target, rtol=self.rtol, atol=self.atol, equal_nan=True)
        )

    @cached_property
    def significant(self) -> int:
        """How many expected entries stand out from zero (beyond ``atol``)."""
        return int(np.count_nonzero(np.abs(self.expected) > self.atol))

    @cached_property
    def varies(self) -> bool:
        """The expected entries are not all the same value."""
        return _varies(self.expected, self.atol)

    @cached_property
    def ratio(self) -> float:
        """The least-squares factor ``c`` of ``got ~ c * expected`` (NaN without a scale)."""
        scale = float(np.vdot(self.expected, self.expected))
        return float(np.vdot(self.got, self.expected)) / scale if scale > 0 else math.nan

    @cached_property
    def sorted_expected(self) -> np.ndarray:
        return np.sort(self.expected.ravel())

    @cached_property
    def same_values(self) -> bool:
        """The result holds the expected values (as a multiset), perhaps in other places."""
        g, e = self.got.ravel(), self.expected.ravel()
        if g.size != e.size or g.size < 2:
            return False
        slack = float(np.sum(self.atol + self.rtol * np.abs(e))) * 1.01 + 1e-12
        if abs(float(g.sum()) - float(e.sum())) > slack:  # cheap: most wrong answers stop here
            return False
        return self.matches(np.sort(g), self.sorted_expected)

    @cached_property
    def informative(self) -> bool:
        """The expected values are distinct enough that their positions mean something."""
        size = self.expected.size
        distinct = int(np.count_nonzero(np.diff(self.sorted_expected) > self.atol)) + 1
        return distinct >= max(min(size, 3), size // 2)


def _scaled(count: Callable[[_Case], float | None], *, inverse: bool = False) -> Callable[[_Case], object]:
    """A test for ``got == count * expected`` (or ``expected / count``), returning ``n``."""

    def test(case: _Case) -> Mapping[str, object] | None:
        n = count(case)
        if n is None or n in (0, 1) or case.significant == 0:
            return None
        factor = 1 / n if inverse else n
        if not math.isclose(case.ratio, factor, rel_tol=0.05) or not case.matches(case.got / factor):
            return None
        return {"n": _number(n)}

    return test


def _count(n: int, minimum: int = 3) -> int | None:
    """``n`` as the count behind a factor, if it is big enough not to be 1 or 2."""
    return n if n >= minimum else None


def _any_factor(case: _Case) -> Mapping[str, object] | None:
    """``got == c * expected`` for a ``c`` that is worth naming, on enough entries to tell."""
    c = case.ratio
    if case.significant < 2 or not case.varies or not math.isfinite(c) or c == 0 or abs(c - 1) < 1e-3:
        return None
    return {"factor": _number(c)} if case.matches(case.got / c) else None


def _offset(case: _Case) -> Mapping[str, object] | None:
    if not case.varies:
        return None
    shift = float(np.mean(case.got - case.expected))
    return {"offset": f"{shift:+.3g}"} if case.matches(case.got - shift) else None


def _unchanged(case: _Case) -> bool:
    return case.initial is not None and case.matches(case.got, case.initial) and not case.matches(case.initial)


def _all_zero(case: _Case) -> bool:
    return case.significant > 0 and bool(np.all(np.abs(case.got) <= case.atol))


def _axis_orders(ndim: int) -> Iterator[tuple[int, ...]]:
    """Every order of ``ndim`` axes but the identity (none beyond a few axes: ``ndim!`` grows fast)."""
    if 2 <= ndim <= _MAX_PERMUTED_AXES:
        yield from itertools.islice(itertools.permutations(range(ndim)), 1, None)


def _permuted(case: _Case) -> Mapping[str, object] | None:
    """``got == expected.permute(order)``."""
    if not case.same_values:
        return None
    for order in _axis_orders(case.expected.ndim):
        if case.matches(case.got, case.expected.transpose(order)):
            how = "transposed" if len(order) == 2 else f"with the axes permuted as {_axes(order)}"
            return {"how": how, "restore": _axes(_inverse(order))}
    return None


def _same_flat_order(case: _Case) -> Mapping[str, object] | None:
    if case.got.shape == case.expected.shape or not case.matches(case.got.ravel(), case.expected.ravel()):
        return None
    return {"shape": _axes(case.expected.shape)}


def _reshaped_from(case: _Case) -> Mapping[str, object] | None:
    """``got`` is ``expected.permute(order)`` reshaped: a ``view`` where a ``permute`` was needed."""
    if not case.same_values:
        return None
    for order in _axis_orders(case.expected.ndim):
        if case.matches(case.got.ravel(), case.expected.transpose(order).ravel()):
            return {"order": _axes(order)}
    return None


def _reshaped_into(case: _Case) -> Mapping[str, object] | None:
    """``got.permute(order)`` reshaped is ``expected``: a ``permute`` where a ``reshape`` was needed."""
    if not case.same_values:
        return None
    for order in _axis_orders(case.got.ndim):
        if case.matches(case.got.transpose(order).ravel(), case.expected.ravel()):
            return {"order": _axes(order)}
    return None


def _shifted(step: int) -> Callable[[_Case], bool]:
    """A test for ``got[t] == expected[t + step]`` along axis 0, with ``step`` in ``(1, -1)``."""

    def test(case: _Case) -> bool:
        e = case.expected
        if e.ndim == 0 or e.shape[0] < 3 or case.got.shape != e.shape or case.matches(e[1:], e[:-1]):
            return False
        ahead, behind = (case.got[:-1], e[1:]) if step > 0 else (case.got[1:], e[:-1])
        return case.matches(ahead, behind)

    return test


def _clipped(case: _Case) -> bool:
    """``got == max(expected, 0)``, with expected entries on both sides of zero."""
    e = case.expected
    return bool(np.any(e < -case.atol) and np.any(e > case.atol)) and case.matches(case.got, np.maximum(e, 0))


def _clip_missing(case: _Case) -> bool:
    """``expected == max(got, 0)``, with negative entries of ``got`` where zeros are expected."""
    g, e = case.got, case.expected
    return bool(np.all(e >= -case.atol) and np.any(e > case.atol) and np.any(g < -case.atol)) and case.matches(
        np.maximum(g, 0)
    )


def _sorted_rows(a: np.ndarray, axis: int) -> np.ndarray:
    rows = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)
    return rows[np.lexsort(rows.T[::-1])]


def _reordered(axis: int) -> Callable[[_Case], bool]:
    """A test for the same slices along ``axis`` (rows, columns) in a different order."""

    def test(case: _Case) -> bool:
        e = case.expected
        if e.ndim < 2 or e.shape[axis] < 2 or not case.same_values or not case.informative:
            return False
        return case.matches(_sorted_rows(case.got, axis), _sorted_rows(e, axis))

    return test


def _reduced(by: str) -> Callable[[_Case], Mapping[str, object] | None]:
    """A test for ``got.sum(axis)`` (``by="got"``) or ``expected.sum(axis)`` (``"expected"``) matching the other.

    Sums and means over everything or over one axis, with and without ``keepdims``;
    returns the ``call``, e.g. ``.sum(dim=1)``.
    """

    def test(case: _Case) -> Mapping[str, object] | None:
        big, small = (case.got, case.expected) if by == "got" else (case.expected, case.got)
        if big.size <= small.size:
            return None
        axes: list[int | None] = [None, *range(big.ndim)] if small.ndim == 0 else list(range(big.ndim))
        for axis, op, keep in itertools.product(axes, ("sum", "mean"), (False, True)):
            if case.matches(getattr(big, op)(axis=axis, keepdims=keep), small):
                return {"call": f".{op}()" if axis is None else f".{op}(dim={axis})"}
        return None

    return test


def _diagonal_is_expected(case: _Case) -> bool:
    g, e = case.got, case.expected
    return g.ndim == 2 and g.shape[0] == g.shape[1] == e.size > 1 and case.matches(np.diagonal(g), e.ravel())


_RESHAPED_FROM = _Signature(
    _reshaped_from,
    "the right values, read out in the wrong order: your result is the expected one permuted as {order} "
    "and then reshaped: `view` / `reshape` where `permute` / `transpose` is needed (reshaping keeps "
    "the memory order; it does not move axes)",
)
_RESHAPED_INTO = _Signature(
    _reshaped_into,
    "the right values, with their axes moved: permuting yours as {order} gives the expected memory "
    "order: `permute` / `transpose` where a plain `reshape` / `view` is expected",
)

# Same shape: how the whole result relates to the expected one; the first that holds is reported.
_SAME_SHAPE: tuple[_Signature, ...] = (
    _Signature(_unchanged, "unchanged from the initial value: the update was never applied, or applied to a copy"),
    _Signature(
        _all_zero,
        "your result is all zeros: nothing was computed or accumulated (an accumulator never added to, "
        "the initial zeros returned, or gradients read after they were cleared)",
    ),
    _Signature(
        _scaled(lambda c: -1.0),
        "sign flipped: your result is minus the expected one, e.g. subtracting where you should add, "
        "or gradient ascent instead of descent",
    ),
    _Signature(
        _scaled(lambda c: 2.0),
        "your result is exactly 2x the expected one: a missing 1/2, or a sum where a mean is expected",
    ),
    _Signature(
        _scaled(lambda c: 2.0, inverse=True),
        "your result is exactly half the expected one: an extra 1/2, or a mean where a sum is expected",
    ),
    _Signature(
        _scaled(lambda c: _count(c.batch_size or 0)),
        "your result is {n}x the expected one, {n} being the batch size: a sum over the batch where a mean is expected",
    ),
    _Signature(
        _scaled(lambda c: _count(c.batch_size or 0), inverse=True),
        "your result is 1/{n} of the expected one, {n} being the batch size: a mean where a sum is expected "
        "(or divided by the batch size twice)",
    ),
    _Signature(
        _scaled(lambda c: _count(c.expected.size)),
        "your result is {n}x the expected one, {n} being its number of entries (N): a sum where a mean is expected",
    ),
    _Signature(
        _scaled(lambda c: _count(c.expected.size), inverse=True),
        "your result is 1/{n} of the expected one, {n} being its number of entries (1/N): a mean where a "
        "sum is expected (or divided by N twice)",
    ),
    _Signature(
        _scaled(lambda c: _count(c.expected.shape[0]) if c.expected.ndim >= 2 else None),
        "your result is {n}x the expected one, {n} being its number of rows (N): a sum over the rows "
        "(samples) where a mean is expected",
    ),
    _Signature(
        _scaled(lambda c: _count(c.expected.shape[0]) if c.expected.ndim >= 2 else None, inverse=True),
        "your result is 1/{n} of the expected one, {n} being its number of rows (1/N): a mean over the rows "
        "where a sum is expected (or divided by N twice)",
    ),
    _Signature(
        _any_factor,
        "your result is off by a constant factor of {factor} (yours = {factor} x expected): a wrong scale "
        "or normalisation; if {factor} or its inverse is a count in your problem, such as the batch size, "
        "a sum where a mean is expected or the reverse",
    ),
    _Signature(
        _offset,
        "every entry is off by the same constant {offset}: a missing or extra constant term (e.g. a bias), "
        "or a shift (such as subtracting the maximum) left in the result",
    ),
    _Signature(
        _permuted,
        "your result is the expected one {how}: a missing or extra `.T` / `permute`, or the operands of a "
        "matrix product in the wrong order",
    ),
    _RESHAPED_FROM,
    _RESHAPED_INTO,
    _Signature(
        _shifted(+1),
        "a trajectory shifted by one step (your entry t is the expected entry t+1): the loss recorded after "
        "the update, or a history off by one",
    ),
    _Signature(
        _shifted(-1),
        "a trajectory shifted by one step (your entry t+1 is the expected entry t): recorded before the "
        "update where after is expected, or a history off by one",
    ),
    _Signature(
        _clipped,
        "values that should be negative are clipped at zero: a ReLU (or `clamp(min=0)`) applied where it should not be",
    ),
    _Signature(
        _clip_missing,
        "your result has negative values where the expected one is 0: a ReLU / clamp missing",
    ),
    _Signature(
        _reordered(0),
        "the right rows in a different order: samples shuffled or sorted differently, or a wrong index along axis 0",
    ),
    _Signature(
        _reordered(-1),
        "the right columns in a different order: e.g. classes or features swapped, or a concatenation in "
        "the wrong order",
    ),
    _Signature(
        lambda c: c.got.ndim >= 1 and c.same_values and c.informative,
        "the right values in the wrong places: the entries are scrambled (a wrong index, gather or reshape order)",
    ),
)

# Different shapes: how the values of the result relate to the expected ones; the first that holds.
_OTHER_SHAPE: tuple[_Signature, ...] = (
    _Signature(
        _permuted,
        "your values are the expected ones {how}: only the axis order is wrong (a missing or extra `.T` / "
        "`permute`, or a matrix product in the wrong order); `.permute{restore}` of yours is the expected result",
    ),
    _Signature(
        _same_flat_order,
        "your values are right and in the right order, only the shape is wrong (a `keepdim`, `unsqueeze` or "
        "`view` too many or too few): `.reshape{shape}` gives the expected result",
    ),
    _RESHAPED_FROM,
    _RESHAPED_INTO,
    _Signature(
        _diagonal_is_expected,
        "the diagonal of your result is the expected answer: a column (N, 1) was broadcast against a flat "
        "(N,); give both operands the same shape",
    ),
    _Signature(_reduced("got"), "`{call}` of your result is the expected one: that reduction is missing"),
    _Signature(_reduced("expected"), "your result is the expected one reduced with `{call}`: a reduction too many"),
    _Signature(
        lambda c: c.matches(c.got, c.expected[1:]),
        "your result is the expected one without its first entry: e.g. the initial value not recorded, "
        "or a loop starting one step late",
    ),
    _Signature(
        lambda c: c.matches(c.got, c.expected[:-1]),
        "your result is the expected one without its last entry: e.g. a loop one step short "
        "(`range(n - 1)`), or the last value not recorded",
    ),
    _Signature(
        lambda c: c.matches(c.got[1:]),
        "your result has an extra first entry and otherwise matches the expected one: e.g. the initial "
        "value recorded as well",
    ),
    _Signature(
        lambda c: c.matches(c.got[:-1]),
        "your result has an extra last entry and otherwise matches the expected one: e.g. one step too many",
    ),
)


def _positions(mask: np.ndarray, singular: str, plural: str, suffix: str = "") -> tuple[str, bool] | None:
    """``("row 0", False)``, ``("the last row", False)``, ``("rows 2, 5", True)``; None if all or none."""
    index = np.flatnonzero(mask)
    n = mask.size
    if index.size in (0, n):
        return None
    if index.size == 1:
        i = int(index[0])
        return (f"the last {singular}{suffix}" if i == n - 1 else f"{singular} {i}{suffix}"), False
    listed = ", ".join(str(int(i)) for i in index[:_MAX_LISTED])
    if index.size > _MAX_LISTED:
        listed += f", ... ({index.size} of {n})"
    return f"{plural} {listed}{suffix}", True


def _where_it_differs(case: _Case) -> Mapping[str, object] | None:
    """The rows and columns that hold every difference, when the others all match."""
    bad = ~np.isclose(case.got, case.expected, rtol=case.rtol, atol=case.atol, equal_nan=True)
    count = int(np.count_nonzero(bad))
    if bad.ndim < 2 or count in (0, bad.size):  # a 1-d result: the check lists the entries itself
        return None
    if count == 1:
        return {"where": f"only the entry at {tuple(int(i) for i in np.argwhere(bad)[0])} differs"}
    names = ("row", "rows") if bad.ndim == 2 else ("slice", "slices", " along axis 0")
    rows = _positions(bad.reshape(bad.shape[0], -1).any(axis=1), *names)
    columns = _positions(bad.reshape(-1, bad.shape[-1]).any(axis=0), "column", "columns") if bad.ndim == 2 else None
    if rows and columns:
        return {"where": f"the differences are confined to {rows[0]} and {columns[0]}"}
    part = rows or columns
    if part is None:
        return None
    label, many = part
    return {"where": f"{label} differ" if many else f"only {label} differs"}


_WHERE: tuple[_Signature, ...] = (_Signature(_where_it_differs, "{where}; the others match"),)


def _first_non_finite(case: _Case) -> Mapping[str, object] | None:
    """Where the first NaN or inf is, and how many there are (not for a single number)."""
    if case.got.size == 1:
        return None  # "your result is NaN" says nothing the check has not said
    bad = ~np.isfinite(case.got) & np.isfinite(case.expected)
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    value = float(case.got[first])
    kind = "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return {"kind": kind, "index": first, "count": int(np.count_nonzero(bad)), "size": bad.size}


def _diverged(case: _Case) -> bool:
    """A 1-d trajectory that grew a lot before it turned NaN or inf."""
    g = case.got
    if g.ndim != 1:
        return False
    k = int(np.argmax(~np.isfinite(g)))
    return k >= 2 and abs(g[k - 1]) > _GROWTH * max(abs(g[0]), case.atol, 1e-12)


def _holds(case: _Case, predicate: Callable[[np.ndarray], np.ndarray]) -> bool:
    return bool(np.any(predicate(case.got) & np.isfinite(case.expected)))


# Results with NaN or inf where the expected values are finite: every row that holds.
_NON_FINITE: tuple[_Signature, ...] = (
    _Signature(_first_non_finite, "the first {kind} is at index {index} ({count} of {size} entries are NaN or inf)"),
    _Signature(
        _diverged, "the values grow before they turn NaN or inf: the training diverged; lower the learning rate"
    ),
    _Signature(
        lambda c: _holds(c, np.isposinf),
        "inf is an overflow, usually `exp` of a large number: "
        "subtract the maximum first (the max-subtraction trick, or `torch.logsumexp` / "
        "`log_softmax`), or a division by zero",
    ),
    _Signature(
        lambda c: _holds(c, np.isneginf),
        "-inf is usually the log of 0 (e.g. `log(softmax(x))` "
        "underflowing): add a small epsilon, or use `log_softmax`; or a division by zero",
    ),
    _Signature(
        lambda c: _holds(c, np.isnan),
        "NaN comes from 0/0, inf - inf or 0 * inf (often right after an "
        "overflow), the log or square root of a negative number, or too large a learning rate",
    ),
)


def _value_diagnoses(case: _Case) -> list[str]:
    if case.got.shape != case.expected.shape:
        if not (case.varies or _varies(case.got, case.atol)):
            return []  # constant values fit many layouts: let the shape speak
        return _sentences(_OTHER_SHAPE, case, first_only=True)
    if np.any(~np.isfinite(case.got) & np.isfinite(case.expected)):
        return _sentences(_NON_FINITE, case)
    return _sentences(_SAME_SHAPE, case, first_only=True) or _sentences(_WHERE, case)


# What diagnose reads: arrays, tensors, numbers and (nested) lists of them. Anything else (such as
# a grader's handle on an object in the student's kernel) is not inspected: reading its attributes
# could run code or make requests.
_PLAIN = (np.ndarray, np.generic, torch.Tensor, int, float, bool, list, tuple)


def _as_array(value: Any) -> np.ndarray:
    """A float64 NumPy array of a plain value (see ``_PLAIN``); complex values are refused."""
    if not isinstance(value, _PLAIN):
        raise TypeError(f"not inspected: {type(value).__name__}")
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_complex():
            raise TypeError("complex values")
        return value.to(torch.float64).numpy()
    if np.iscomplexobj(value):
        raise TypeError("complex values")
    return np.asarray(value, dtype=np.float64)


def _dtype_of(value: Any) -> object | None:
    """The dtype of an array or tensor, or the one NumPy gives a number or list; None if unknown."""
    if isinstance(value, np.ndarray | np.generic | torch.Tensor):
        return value.dtype
    if not isinstance(value, _PLAIN):
        return None
    try:
        dtype = np.asarray(value).dtype
    except Exception:  # e.g. a ragged list
        return None
    return None if dtype.kind == "O" else dtype


def _dtype_diagnoses(got: Any, expected: Any, case: _Case) -> list[str]:
    """:func:`diagnose_dtype` for the original values, with their largest relative difference."""
    g, e = case.got, case.expected
    error = math.inf  # values of another shape differ by more than rounding
    if g.shape == e.shape:
        error = float(np.max(np.abs(g - e) / np.maximum(1e-8, np.abs(g) + np.abs(e)), initial=0.0))
    whole = bool(np.all(e == np.round(e)))
    return diagnose_dtype(_dtype_of(got), _dtype_of(expected), max_rel_error=error, whole_numbers_expected=whole)


def _safely(stage: Callable[..., list[str]], *args: Any, **kwargs: Any) -> list[str]:
    """``stage(*args, **kwargs)``, or no diagnosis if it fails: a diagnosis must never hide the check's message."""
    try:
        return stage(*args, **kwargs)
    except Exception:
        return []


def diagnose(
    got: Any,
    expected: Any,
    *,
    rtol: float,
    atol: float,
    initial: Any = None,
    batch_size: int | None = None,
) -> list[str]:
    """Short sentences naming the likely mistake behind ``got`` where ``expected`` is expected.

    ``got`` and ``expected`` are arrays, tensors, lists or numbers (other objects
    are left alone: no attribute of theirs is read, and ``[]`` comes back); ``rtol`` and
    ``atol`` are the check's tolerances (as in ``np.allclose``). ``initial`` is
    the value before an update, to recognise an update never applied;
    ``batch_size`` lets a factor of the batch size be named as such.

    The sentences come most specific first: a wrong shape, then a telling dtype,
    then what the values say: NaN and inf (where they start, what causes them);
    for the same shape, the first relation between the whole result and the
    expected one that holds (an unchanged value, all zeros, a constant factor or
    offset, permuted axes, a wrong reshape order, a one-step shift, a ReLU too
    many or missing, reordered rows, scrambled entries), else which rows and
    columns differ. A result that matches, or differs in no recognisable way,
    gives ``[]``. Never raises; costs a few passes over the data (a sort at most).
    """
    with np.errstate(all="ignore"):
        try:
            init = None if initial is None else _as_array(initial)
            case = _Case(_as_array(got), _as_array(expected), float(rtol), float(atol), init, batch_size)
            same_shape = case.got.shape == case.expected.shape
            if same_shape and case.matches(case.got):
                return []
        except Exception:  # not something the check compares as numbers: nothing to say
            return []
        values = _safely(_value_diagnoses, case)
        dtypes = _safely(_dtype_diagnoses, got, expected, case)
        if same_shape:
            return list(dict.fromkeys(dtypes + values))
        # What the values say explains a wrong shape better than the shape alone.
        return list(dict.fromkeys((values or _safely(diagnose_shape, case.got.shape, case.expected.shape)) + dtypes))


def format_diagnoses(diagnoses: Sequence[str]) -> str:
    """The diagnoses as the tail of a failure message: ``""`` for none, else ``"\\nLikely cause: ..."``."""
    if not diagnoses:
        return ""
    if len(diagnoses) == 1:
        return f"\nLikely cause: {diagnoses[0]}."
    return "\nLikely causes:\n" + "\n".join(f"  - {d}." for d in diagnoses)
