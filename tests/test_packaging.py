"""environment.yml (conda) and pyproject.toml (pip) ask for the same packages and bounds."""

from __future__ import annotations

import tomllib
import yaml
from conftest import ROOT
from packaging.requirements import Requirement

# conda-forge names of packages whose PyPI name differs
CONDA_NAMES = {"duckdb": "python-duckdb", "confluent-kafka": "python-confluent-kafka",
               "uvicorn": "uvicorn-standard", "prometheus-client": "prometheus_client", "ray": "ray-core",
               "redis": "redis-py"}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [Requirement(r) for r in project["dependencies"] + extras["test"] + extras["ray"]]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            req = Requirement(dep.replace("=", "==") if "=" in dep and not any(op in dep for op in "<>=!") else dep)
            conda[req.name] = req.specifier
    for req in wanted:
        name = CONDA_NAMES.get(req.name, req.name)
        assert name in conda, f"{req.name} is in pyproject.toml but not in environment.yml"
        assert conda[name] == req.specifier, f"{req.name}: pyproject {req.specifier} vs environment.yml {conda[name]}"
    extra = set(conda) - {CONDA_NAMES.get(r.name, r.name) for r in wanted} - {"python", "pip"}
    assert not extra, f"environment.yml has packages pyproject.toml does not: {extra}"


def test_the_code_is_ruff_clean():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_environment_yml_pip_section_matches_the_optional_extras():
    """Extras installed by pip in environment.yml (capymoa) have the bounds pyproject gives them."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = {str(Requirement(r).name): Requirement(r).specifier for name, reqs in extras.items() if name != "test"
              for r in reqs}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [Requirement(r) for dep in env["dependencies"] if isinstance(dep, dict) for r in dep.get("pip", [])]
    assert pip, "environment.yml has no pip section (the capymoa extra)"
    for req in pip:
        assert req.name in wanted, f"{req.name} is in environment.yml's pip section but in no pyproject extra"
        assert req.specifier == wanted[req.name], f"{req.name}: pyproject {wanted[req.name]} vs {req.specifier}"
