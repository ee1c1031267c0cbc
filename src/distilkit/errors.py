"""The error a user can fix: a bad flag, file, model reference, input or parameter.

``UserError`` is what distilkit raises for a user's mistake, with a message that names the flag,
file or input and says what to do. The command line prints it as one line and exits with status 2
(``distilkit.cli.app.main``); the server answers 4xx. Anything else that escapes a command is a
bug or an environment failure: the command line prints its traceback and exits with status 1.

It subclasses ``ValueError`` so that callers that catch ``ValueError`` (the server's 422 mapping,
scripts written against earlier versions) keep working.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake the user can fix; the message names it and says what to do instead."""
