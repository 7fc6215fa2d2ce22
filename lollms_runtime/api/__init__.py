"""The OpenAI-compatible HTTP API: every personality is a model (``/v1/models``,
``/v1/chat/completions``). Served beside the web app by ``lollms serve`` and alone by ``lollms api``.
"""
