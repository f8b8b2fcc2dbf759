"""The one base type of a user's mistake: every error a user can fix by changing a file, a flag or a
variable subclasses `UserError`, so the command line catches it once and prints it as one line
(`moments <command>: <message>`, exit code 2). Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake the user can act on; the message says what and where, never a secret's value."""
