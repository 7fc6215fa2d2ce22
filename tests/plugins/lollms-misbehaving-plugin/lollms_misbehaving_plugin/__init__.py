"""Test-only plugins that load but misbehave; each module is its own entry point."""
