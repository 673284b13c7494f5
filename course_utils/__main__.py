"""``python -m course_utils`` is the ``course`` command."""

from course_utils.cli import main

raise SystemExit(main())
