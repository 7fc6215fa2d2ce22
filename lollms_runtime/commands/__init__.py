"""The built-in CLI commands: each module has ``register(subparsers, common)``, called through the
``register_commands`` hook like a plugin's (see :mod:`lollms_runtime.default_plugins.commands`).

Modules are imported only when the parser is built; their handlers import heavy things lazily.
"""

from __future__ import annotations

MODULES: tuple[str, ...] = (
    "lollms_runtime.commands.personalities",
    "lollms_runtime.commands.plugins",
    "lollms_runtime.commands.run",
    "lollms_runtime.commands.serve",
    "lollms_runtime.commands.api",
    "lollms_runtime.commands.test",
    "lollms_runtime.commands.discussions",
    "lollms_runtime.commands.importing",
    "lollms_runtime.commands.install",
    "lollms_runtime.commands.models",
)
