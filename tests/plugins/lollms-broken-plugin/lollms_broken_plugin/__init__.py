"""Test-only plugin that cannot be imported: the host must report it by name and go on."""

raise RuntimeError("this plugin is broken on purpose")
