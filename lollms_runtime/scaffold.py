"""`lollms new NAME`: a valid, pip-installable personality package."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import LollmsError

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


def create_package(name: str, parent: Path, author: str = "you") -> Path:
    """Write the package ``lollms-personality-NAME`` under ``parent`` and return its folder."""
    from .importers.package import write_package

    ident = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_")
    if not ident or not ident[0].isalnum() or len(ident) > 64:
        raise LollmsError(f"cannot make an id from {name!r}: use letters, digits and '_'")
    title = (
        name.strip().replace("_", " ").title() if name.islower() or "_" in name else name.strip()
    )
    values = {"ident": ident, "title": title, "author": author}
    return write_package(parent, ident, title, PERSONALITY.format(**values))
