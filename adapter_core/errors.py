"""The one error type a user can cause, so every front door can show it as a message."""


class AdapterError(ValueError):
    """A problem the user can fix. The message says what was wrong and how to fix it."""
