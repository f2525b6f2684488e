"""The README is the contract with a new user: its two commands, and a reference that matches the magics."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_readme_gives_the_two_commands():
    text = (REPO / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_reference_is_generated_from_the_magics_help():
    for env in ({}, {"COLUMNS": "200", "SM_R_MAGIC_IMAGE": "1.dkr.ecr.x/y:z", "SM_R_MAGIC_BACKEND": "docker"}):
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_reference.py"), "--check"],
                              capture_output=True, text=True, env={**os.environ, **env})
        assert proc.returncode == 0, (env, proc.stderr)
    text = (REPO / "README.md").read_text()
    for option in ("--channel", "--hp", "--input", "--output", "--model", "--serverless", "--keep", "--packages"):
        assert option in text
