"""Self-checks that explain themselves.

A failed check raises :class:`CheckError` (an ``AssertionError``, so nbgrader
and pytest count it as a failed test) whose message reads like a reviewer's
note: what was checked, what was expected, what came back, and, when the
answer matches a known classic mistake, the mistake by name.

Known mistakes are passed as data: ``mistakes={"forgot the ReLU": wrong_value}``.
When the student's answer is close to one of them, the message says so.

Notebooks use the package as one namespace (``from course_utils import checks``,
then ``checks.check_close(...)``); its modules, one job each:

* :mod:`course_utils.checks.core` - :class:`CheckError`, :func:`passed`, values, shapes,
  conditions, update steps and gradients (``check_close``, ``gradient_check``, ...);
* :mod:`course_utils.checks.diagnosis` - how a wrong result differs from the expected one
  (the likely causes ``check_close`` names for mistakes nobody listed);
* :mod:`course_utils.checks.errors` - :class:`explain_errors` and its table of known
  errors, :data:`KNOWN_ERRORS`;
* :mod:`course_utils.checks.tensors` - torch tensors, update steps and autograd functions;
* :mod:`course_utils.checks.modules` - ``nn.Module`` objects and optimizers;
* :mod:`course_utils.checks.probes` - probe models and recording stand-ins the checks run the
  student's code on (``checks.RecordingWriter()``, ``checks.grad_on_copy(...)``, ...).

The helpers for graded cells that also run in the grader's judge (``run_in_kernel``,
``substitute``, ...) come from :mod:`course_utils.remote` and are re-exported here.
"""

from __future__ import annotations

from course_utils.checks.core import (
    CheckError,
    check_close,
    check_params_updated,
    check_shape,
    check_true,
    gradient_check,
    numeric_gradient,
    passed,
    rel_error,
    to_numpy,
)
from course_utils.checks.errors import KNOWN_ERRORS, explain_errors
from course_utils.checks.modules import (
    check_forward_shape,
    check_optimizer_tracks_model,
    check_registered,
    unregistered,
)
from course_utils.checks.probes import (
    CountingLinear,
    GradOnCopy,
    ModeRecorder,
    ProbeModel,
    RecordingMSE,
    RecordingWriter,
    grad_on_copy,
    parameter_copies,
    probe_batches,
    with_new_parameter_objects,
)
from course_utils.checks.tensors import (
    check_autograd_function,
    check_cross_entropy_inputs,
    check_grads_cleared,
    check_tensor,
    check_updated_in_place,
    param_snapshot,
)

# Helpers for graded cells that also run in the grader's judge (see course_utils.remote).
from course_utils.remote import (
    fetch,
    in_kernel,
    is_instance,
    run_in_kernel,
    seconds_since,
    secret_order,
    substitute,
)

__all__ = [
    "CheckError",
    "CountingLinear",
    "GradOnCopy",
    "KNOWN_ERRORS",
    "ModeRecorder",
    "ProbeModel",
    "RecordingMSE",
    "RecordingWriter",
    "check_autograd_function",
    "check_close",
    "check_cross_entropy_inputs",
    "check_forward_shape",
    "check_grads_cleared",
    "check_optimizer_tracks_model",
    "check_params_updated",
    "check_registered",
    "check_shape",
    "check_tensor",
    "check_true",
    "check_updated_in_place",
    "explain_errors",
    "fetch",
    "grad_on_copy",
    "gradient_check",
    "in_kernel",
    "is_instance",
    "numeric_gradient",
    "param_snapshot",
    "parameter_copies",
    "passed",
    "probe_batches",
    "rel_error",
    "run_in_kernel",
    "seconds_since",
    "secret_order",
    "substitute",
    "to_numpy",
    "unregistered",
    "with_new_parameter_objects",
]
