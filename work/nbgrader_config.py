"""Your work folder: `course start <assignment>` copies an assignment here, git ignores it.

nbgrader's Assignment List reads its settings from the folder it fetches into, so this file
(the only tracked one here) loads the course's own `nbgrader_config.py`.
"""

from pathlib import Path

load_subconfig("nbgrader_config.py", path=str(Path(__file__).resolve().parent.parent))  # noqa: F821 - traitlets
