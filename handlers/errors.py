"""The only exception whose text may be shown to a user."""


class UserFacingError(Exception):
    """Raise with polite Japanese text meant for the user; anything else stays in the logs."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
