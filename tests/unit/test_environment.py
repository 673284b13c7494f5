"""The installation: conda and pip agree, nbgrader's extensions are enabled, the CLI runs."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment_yml_requirements() -> dict[str, str]:
    pip_section, reqs = False, {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.strip()
        if stripped == "- pip:":
            pip_section = True
            continue
        if pip_section and stripped.startswith("- "):
            req = stripped[2:].replace(" ", "")
            reqs[_name(req)] = req
    return reqs


def test_environment_yml_and_pyproject_agree():
    """Do environment.yml and pyproject.toml list the same packages with the same ranges?"""
    assert _environment_yml_requirements() == _pyproject_requirements()


def test_environment_yml_pins_python():
    """Does the conda environment ask for a Python the project supports?"""
    assert re.search(r"^\s*- python=3\.1[1-9]", (ROOT / "environment.yml").read_text(), re.M)


def test_nbgrader_lab_extensions_enabled():
    """Does `jupyter labextension list` show nbgrader's extension enabled and OK?"""
    result = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    line = next((ln for ln in text.splitlines() if "nbgrader" in ln), "")
    assert "enabled" in line and "OK" in line, text


def test_course_command_runs_as_module_and_script():
    """Do `python -m course_utils` and the `course` script both answer --help?"""
    script = str(Path(sys.executable).parent / "course")
    for cmd in ([sys.executable, "-m", "course_utils", "--help"], [script, "--help"]):
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0 and "release" in result.stdout, result.stderr
