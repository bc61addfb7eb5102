"""The one exception type that means "the user asked for something we cannot do".

Entry points catch :class:`UserError` and print its message (no traceback) with a non-zero exit
status; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the input (arguments, files, data) with a message that says what to do."""


def describe_choices(kind: str, received, choices) -> str:
    """Return ``"unknown <kind> 'x'; choose one of: a, b, c (received 'x')"`` with a close match.

    Used wherever a name is looked up, so every such error reads the same way.
    """
    import difflib

    names = sorted(str(choice) for choice in choices)
    message = f"unknown {kind} {received!r}; choose one of: {', '.join(names)}"
    close = difflib.get_close_matches(str(received), names, n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return message + f" (received {received!r})"
