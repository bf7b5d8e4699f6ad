"""Behaviour events (views, clicks, carts, purchases, likes, ratings): the durable store the
recommenders are fitted from, and CSV import of existing logs into it."""

from stylesense.events.importer import PRESETS, EventImportReport, import_events, read_events_csv
from stylesense.events.store import EventStore, ImportCounts

__all__ = ["PRESETS", "EventImportReport", "EventStore", "ImportCounts", "import_events", "read_events_csv"]
