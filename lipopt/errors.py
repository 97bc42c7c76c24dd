"""The one exception type lipopt raises for bad input; the CLI turns it into a one-line message."""


class LipoptError(ValueError):
    """Bad input or an impossible request, with a message that names the problem and the fix."""
