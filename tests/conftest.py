"""Shared pytest setup.

Tests run in fast mode (``COURSE_FAST=1``) unless the caller set the variable,
so a plain ``pytest`` stays within the CI budget; kernels started by nbval and
nbgrader inherit it.
"""

import os

os.environ.setdefault("COURSE_FAST", "1")
