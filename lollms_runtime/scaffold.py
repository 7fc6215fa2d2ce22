"""`lollms new NAME`: a valid, pip-installable personality package."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import LollmsError

PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[project]
name = "lollms-personality-{dash}"
version = "0.1.0"
description = "{title}: a lollms-runtime personality"
requires-python = ">=3.11"
dependencies = ["lollms-runtime"]

[project.entry-points.lollms_runtime]
{ident} = "{module}"

[tool.hatch.build.targets.wheel]
packages = ["{module}"]
"""

MODULE = '''\
"""The {title} personality: registers its folder with lollms-runtime (data only, no code runs)."""

from collections.abc import Callable
from pathlib import Path

from lollms_runtime.plugins import hookimpl


@hookimpl
def register_personalities(register: Callable[[Path], None]) -> None:
    register(Path(__file__).parent)
'''

PERSONALITY = """\
schema: 1
id: {ident}
name: {title}
version: "0.1.0"
author: {author}
category: generic
language: english
description: A helpful assistant. Describe what {title} does here.
welcome: Hello! I am {title}. How can I help?
examples:
  - What can you do?
conditioning: |
  You are {title}, a helpful and concise assistant.
sampling:
  temperature: 0.7
  max_tokens: 512
settings:
  concise: {{type: boolean, default: true, title: Keep answers short}}
pipeline:
  - generate:
      id: answer
      system: "{{{{ personality.conditioning }}}}{{% if settings.concise %}} Answer in a few sentences.{{% endif %}}"
  - reply: {{text: "{{{{ answer }}}}"}}
tests:
  - name: answers
    input: Say hello.
    scripted: ["Hello there!"]
    expect: {{contains: hello}}
"""

README = """\
# {title}

A [lollms-runtime](https://pypi.org/project/lollms-runtime/) personality.

    pip install -e .          # or: lollms install .
    lollms validate {module}
    lollms run {ident} "What can you do?"
"""


def create_package(name: str, parent: Path, author: str = "you") -> Path:
    """Write the package ``lollms-personality-NAME`` under ``parent`` and return its folder."""
    ident = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_")
    if not ident or not ident[0].isalnum():
        raise LollmsError(f"cannot make an id from {name!r}: use letters, digits and '_'")
    dash = ident.replace("_", "-")
    module = f"lollms_personality_{ident}"
    title = (
        name.strip().replace("_", " ").title() if name.islower() or "_" in name else name.strip()
    )
    root = parent / f"lollms-personality-{dash}"
    if root.exists():
        raise LollmsError(f"{root} already exists: choose another name or remove it")
    values = {"ident": ident, "dash": dash, "module": module, "title": title, "author": author}
    (root / module / "assets").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(**values), encoding="utf-8")
    (root / "README.md").write_text(README.format(**values), encoding="utf-8")
    (root / module / "__init__.py").write_text(MODULE.format(**values), encoding="utf-8")
    (root / module / "personality.yaml").write_text(PERSONALITY.format(**values), encoding="utf-8")
    return root
