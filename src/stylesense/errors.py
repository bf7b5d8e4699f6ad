"""The library's one error hierarchy: every error it raises on purpose is a StyleSenseError.

Each surface maps these once (the CLI to an ``error:`` line and exit status 2, the REST API to
an RFC 9457 problem response with the status below), so no surface needs to know which module
raised what. ``str(err)`` is always one line for people: what is wrong and, where there is one,
how to fix it. Anything else escaping the library is a bug, and is reported as one.

| class | meaning | HTTP |
|---|---|---|
| InvalidInput | the caller's input is wrong (argument, CSV, filter, photo, id) | 422 |
| NotFound | a named thing does not exist (item, model) | 404 |
| NotReady | the home lacks what the request needs yet (no index, no model, no events) | 409 |
| Conflict | the request contradicts the home's state (another embedder for its vectors) | 409 |
| Damaged | a file of the home is damaged; the message names it and the repair | 500 |
"""

from __future__ import annotations


class StyleSenseError(Exception):
    """Base class of every error the library raises on purpose."""


class InvalidInput(StyleSenseError, ValueError):
    """The caller's input cannot be used (a ValueError too, as Python code expects)."""


class NotFound(StyleSenseError, LookupError):
    """A named item, shopper or model does not exist (a LookupError too; unlike KeyError its
    message prints without quotes)."""


class NotReady(StyleSenseError):
    """The home does not have what the request needs yet; the message says which command
    provides it (e.g. "no index yet: import a catalogue first")."""


class Conflict(StyleSenseError):
    """The request contradicts what the home already holds."""


class Damaged(StyleSenseError):
    """A file of the home cannot be read back; the message names the file and the repair."""
