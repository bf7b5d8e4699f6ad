"""Behaviour events (views, clicks, carts, purchases, likes, ratings): the durable store the
recommenders are fitted from, and CSV import of existing logs into it.

Importing this package loads the store alone: the CSV importer (pandas) is imported when one
of its names is first asked for, so `stylesense events add` never loads pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stylesense.events.store import EventPage, EventStore, ImportCounts, NewEvent, StoredEvent

if TYPE_CHECKING:
    from stylesense.events.importer import PRESETS, EventImportReport, import_events, read_events_csv

_IMPORTER = ("PRESETS", "EventImportReport", "import_events", "read_events_csv")


def __getattr__(name: str) -> Any:
    """The importer's names, imported on first use."""
    if name in _IMPORTER:
        from stylesense.events import importer

        return getattr(importer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PRESETS", "EventImportReport", "EventPage", "EventStore", "ImportCounts", "NewEvent", "StoredEvent",
           "import_events", "read_events_csv"]
