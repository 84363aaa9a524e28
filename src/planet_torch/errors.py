"""The one exception type that means "the user can fix this": the CLI prints it as one line."""


class UserError(Exception):
    """A mistake in input or environment; its message says what to do. Never a bug."""
