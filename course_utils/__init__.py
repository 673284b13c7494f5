"""Helpers shared by every notebook of the PyTorch course.

Modules, one job each:

* :mod:`course_utils.runtime` - seeding, device choice, the fast/full mode switch;
* :mod:`course_utils.checks` - self-checks that explain what went wrong;
* :mod:`course_utils.data` - finding, verifying and loading the data sets;
* :mod:`course_utils.release` - building solution notebooks and student releases;
* :mod:`course_utils.grading` - autograding submissions with nbgrader;
* :mod:`course_utils.cli` - the ``course`` command.
"""

from course_utils import checks
from course_utils.runtime import budget, fast_mode, get_device, set_seed, setup

__all__ = ["budget", "checks", "fast_mode", "get_device", "set_seed", "setup"]
__version__ = "0.1.0"
