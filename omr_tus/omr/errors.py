"""The two ways OMR input goes wrong: a template the server cannot use, a sheet it cannot read."""


class TemplateError(ValueError):
    """A template the server cannot use; `key` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


class SheetError(Exception):
    """This page cannot give a result; the message is the reason shown to the user."""
