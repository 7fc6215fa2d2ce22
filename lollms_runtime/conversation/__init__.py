"""The conversation service: discussions and turns for every front end (no UI framework here).

service = ConversationService(runtime, Store())
turn = service.send(personality, "Imagine something cool.")
for event in turn:  # StepStarted, Token, StepFinished, ..., Done
    ...
"""

from __future__ import annotations

from .service import ConversationService, Version
from .turn import Turn

__all__ = ["ConversationService", "Turn", "Version"]
