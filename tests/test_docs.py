"""The README stays true to the code: every command, flag, variant and format is documented,
and its two set-up commands are the ones CI runs."""

from pathlib import Path

import click

from export.formats import FORMATS
from zoo.cli import main
from zoo.registry import VARIANTS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_command_and_flag_is_in_the_readme():
    for name, command in main.commands.items():
        assert f"`zoo {name}" in README, name
        for param in command.params:
            if isinstance(param, click.Option):
                flag = max(param.opts, key=len)
                assert flag in README, f"zoo {name} {flag}"


def test_every_variant_and_format_is_in_the_readme():
    for name in VARIANTS:
        assert f"`{name}`" in README, name
    for name in FORMATS:
        assert name in README


def test_ci_installs_and_tests_exactly_as_the_readme_says():
    ci = (ROOT / ".ci" / "run").read_text()
    install = '.venv/bin/pip install -e ".[dev]"'
    assert install in README and install in ci
    assert ".venv/bin/python -m pytest -q" in README and ".venv/bin/python -m pytest -q" in ci
    assert ".venv/bin/zoo demo" in README
