"""Gorse's data model over the library, so that a Gorse client can run a shop on stylesense.

Gorse (github.com/gorse-io/gorse) keeps items, users and feedback; stylesense keeps a
catalogue, profiles (:mod:`stylesense.events.users`) and events. :class:`Gorse` translates one
into the other, and the ``/api`` routes (:mod:`stylesense.serving.gorse`) only parse and
serialise around it. How the two models meet:

* A Gorse item is a catalogue item, photo or not, written through ``StyleSense.put_item`` /
  ``patch_item``: ``Categories``, ``Comment`` and ``Timestamp`` are its ``categories`` /
  ``comment`` / ``timestamp`` columns, ``Labels`` its ``labels`` column, or one
  ``labels.NAME`` column per label when they are an object (so that catalogue filters reach
  them), and ``IsHidden`` the catalogue's hidden flag. Its other columns (e.g. from a CSV
  import) and its photo stay. An item without a photo is recommended from events; only items
  with photos are found by image search. Deleting an item removes it from the catalogue
  (never recommended again); its events stay, as every removal in stylesense keeps them.
* A Gorse feedback is an event. ``FeedbackType`` maps to an event type
  (:func:`feedback_types`: each event type as itself, ``star`` -> like and ``read`` -> view,
  then the home's ``gorse_feedback_types``, set with ``stylesense config
  gorse_feedback_types=star:purchase,like:cart``); any other type is refused, so that a typo
  never becomes an unweighted event. ``Value`` is the event's value, ``Timestamp`` its time
  (none: now), ``Comment`` and ``Labels`` its comment and labels. Inserting appends events (the
  same feedback sent again is stored once); overwriting (``PUT``) replaces the shopper's events
  of that type on that item, as Gorse keeps one feedback per type, user and item. Several Gorse
  types may name one event type; read back, an event carries the type asked for, else its own
  name when that is a Gorse type too.
* A Gorse user is a profile. Inserting feedback gives each new shopper an empty profile, as
  Gorse does; deleting a user deletes the profile and the shopper's events (a trained model
  forgets them at its next training).
* Recommendations come from the home's default model (the last trained), in every category
  asked for (:class:`InCategories`, over the ``categories`` column); while no model is
  trained, the answer is the most popular items (``Behaviour.popular``) the shopper does not
  have, as Gorse answers with its popular list. The popular list itself needs no model; the
  latest items are those with the newest Gorse ``Timestamp``. Item neighbours are the model's
  similar items, user neighbours the shoppers with the most alike histories
  (``Behaviour.similar_users``); a session is scored by the model as the history of an
  anonymous shopper.

Lists page with Gorse's opaque cursors: "" starts, and the last page returns "".
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from stylesense.catalog.filters import FilterError, Filters
from stylesense.catalog.store import Item
from stylesense.errors import InvalidInput, NotFound
from stylesense.events.store import NewEvent
from stylesense.events.users import MAX_PAGE, User, UserStore, check_labels
from stylesense.home import Config
from stylesense.inputs import check_id, id_problem

if TYPE_CHECKING:
    from stylesense.engine import StyleSense
    from stylesense.events.store import StoredEvent
    from stylesense.recommenders import Recommendation

ALIASES: dict[str, str] = {"star": "like", "read": "view"}
"""Gorse feedback types of its examples and demos that name a stylesense event type otherwise."""

ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero time: how Gorse writes a timestamp that was never set."""

_DAWN = datetime.min.replace(tzinfo=timezone.utc)


def feedback_types(config: Config, known: Collection[str]) -> dict[str, str]:
    """Gorse FeedbackType -> event type: every event type of ``known`` as itself, then
    :data:`ALIASES` (those naming a known type), then the home's ``gorse_feedback_types``."""
    aliases = {name: kind for name, kind in ALIASES.items() if kind in known}
    return {**{t: t for t in known}, **aliases, **(config.gorse_feedback_types or {})}


def check_feedback_types(mapping: Mapping[str, str | None], known: Collection[str]) -> None:
    """InvalidInput unless each name is a possible Gorse feedback type and each target (None:
    no mapping) an event type of ``known``."""
    for name, kind in mapping.items():
        if not isinstance(name, str) or not name.strip() or len(name) > 32 or name != name.strip():
            raise InvalidInput(f"a feedback type is 1 to 32 characters without surrounding spaces, got {name!r}")
        if kind is not None and kind not in known:
            raise InvalidInput(f"feedback type {name!r} cannot map to {kind!r}: not an event type "
                               f"(known: {', '.join(sorted(known))}; `stylesense events weights` adds one)")


def parse_feedback_types(text: str, known: Collection[str]) -> dict[str, str] | None:
    """The home's ``gorse_feedback_types`` from a command line's text: ``star:purchase,like:cart``
    maps Gorse's ``star`` to the ``purchase`` event and ``like`` to ``cart`` (""; none: only
    the defaults of :func:`feedback_types`); checked as :func:`check_feedback_types` checks."""
    mapping: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, sep, kind = pair.partition(":")
        if not sep or not kind.strip():
            raise InvalidInput(f"gorse_feedback_types: {pair!r} is not FEEDBACK_TYPE:EVENT_TYPE "
                               "(e.g. gorse_feedback_types=star:purchase,like:cart)")
        mapping[name.strip()] = kind.strip()
    check_feedback_types(mapping, known)
    return mapping or None


def parse_time(text: str | None) -> datetime | None:
    """A Gorse ``Timestamp``: None for "" (unset), else an ISO 8601 date or date-time (one
    without a zone is UTC) or whole seconds since the epoch, as a UTC datetime."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        moment = (datetime.fromtimestamp(int(text), timezone.utc) if text.isdigit()
                  else datetime.fromisoformat(text))
    except (ValueError, OverflowError, OSError):
        raise InvalidInput(f"timestamp {text!r} is not an ISO 8601 date or time, nor seconds since 1970") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def format_time(moment: datetime | None) -> str:
    """RFC 3339 in UTC, as Go writes a time (``Z``; the zero time for none)."""
    if moment is None:
        return ZERO_TIME
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> timedelta:
    """A Go duration (``write-back-delay``: "10m", "1h30m", "-5s"); "" or None is zero."""
    if not text:
        return timedelta(0)
    sign, body = (-1, text[1:]) if text[0] == "-" else (1, text.lstrip("+"))
    parts = _DURATION.findall(body)
    if body == "0":
        return timedelta(0)
    if not parts or "".join(a + b for a, b in parts) != body:
        raise InvalidInput(f"duration {text!r} is not a Go duration such as 10m or 1h30m")
    return timedelta(seconds=sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


def _cursor(value: str | None) -> str:
    return "" if value is None else base64.urlsafe_b64encode(value.encode()).decode()


def _uncursor(cursor: str | None) -> str | None:
    """The position a cursor of :func:`_cursor` holds; None for "" (the start)."""
    if not cursor:
        return None
    try:
        return base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidInput(f"cursor {cursor!r} was not returned by this server: pass \"\" to start") from None


def _pk_cursor(cursor: str | None) -> int:
    at = _uncursor(cursor)
    if at is None:
        return 0
    if not at.isdigit():
        raise InvalidInput(f"cursor {cursor!r} was not returned by this server: pass \"\" to start")
    return int(at)


def _check_range(n: int, offset: int) -> None:
    if n < 1 or offset < 0:
        raise InvalidInput(f"n must be at least 1 and offset at least 0, got n={n}, offset={offset}")


def _check_page(n: int) -> int:
    if not 1 <= n <= MAX_PAGE:
        raise InvalidInput(f"n must be 1 to {MAX_PAGE}, got {n}")
    return n


@dataclass(frozen=True)
class Feedback:
    """One Gorse feedback: a shopper's event on an item."""

    feedback_type: str
    user_id: str
    item_id: str
    timestamp: datetime | None = None  # None: now, when inserted
    value: float = 0.0
    comment: str = ""
    labels: Any = None  # Gorse's labels (events.users.label_problem)

    def event(self, event_type: str) -> NewEvent:
        """The live event this feedback is stored as."""
        return NewEvent(self.user_id, self.item_id, event_type, self.timestamp, value=self.value,
                        comment=self.comment, labels=self.labels)

    @classmethod
    def of(cls, feedback_type: str, event: "StoredEvent") -> "Feedback":
        """A stored event as a feedback of ``feedback_type``."""
        return cls(feedback_type, event.user_id, event.item_id, event.ts, 0.0 if event.value is None else event.value,
                   event.comment or "", event.labels)

    def to_dict(self) -> dict[str, Any]:
        """Gorse's JSON shape (``Updated`` is the event's time: an overwrite replaces the event)."""
        when = format_time(self.timestamp)
        return {"FeedbackType": self.feedback_type, "UserId": self.user_id, "ItemId": self.item_id,
                "Value": self.value, "Timestamp": when, "Updated": when, "Labels": self.labels,
                "Comment": self.comment}


@dataclass(frozen=True)
class InCategories(Filters):
    """Items in every one of ``categories`` (Gorse's ``category`` parameters, repeated: all of
    them), beside any other filter; each is matched as the catalogue filter
    ``categories=NAME`` matches (case-insensitive; a list column holds it). A catalogue
    filter's values of one column are any of them, so several categories need this."""

    categories: tuple[str, ...] = ()
    _each: tuple[Filters, ...] = field(init=False, repr=False, compare=False)  # one filter per category

    def __post_init__(self) -> None:
        object.__setattr__(self, "_each", tuple(Filters({"categories": (c,)}) for c in self.categories))

    @property
    def active(self) -> bool:
        return bool(self.categories) or super().active

    def check_columns(self, known: set[str]) -> None:
        if self.categories and "categories" not in known:
            raise FilterError("no item has column categories: no item is in a category")
        super().check_columns(known)

    def matches(self, attrs: dict[str, Any]) -> bool:
        return all(f.matches(attrs) for f in self._each) and super().matches(attrs)


@dataclass(frozen=True)
class UserScore:
    """A shopper like another (Gorse's user neighbours)."""

    user_id: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        """Gorse's scored shape."""
        return {"Id": self.user_id, "Score": round(self.score, 6)}


@dataclass(frozen=True)
class GorseItem:
    """One Gorse item, read from or written to a catalogue item's attributes (see
    :meth:`attrs`)."""

    item_id: str
    is_hidden: bool = False
    categories: list[str] = field(default_factory=list)
    timestamp: datetime | None = None
    labels: Any = None
    comment: str = ""

    def checked(self) -> "GorseItem":
        """This item when each field can be stored, else InvalidInput saying which."""
        check_id(self.item_id, "item id")
        if not isinstance(self.categories, list) or not all(isinstance(c, str) and c for c in self.categories):
            raise InvalidInput(f"categories of item {self.item_id!r} must be a list of non-empty strings")
        check_labels(self.labels, f"labels of item {self.item_id!r}")
        for column in _flatten(LABELS, self.labels):
            problem = id_problem(column, "label name")
            if problem is None and "=" in column:
                problem = f"label name {column!r} contains '='"
            if problem:
                raise InvalidInput(f"labels of item {self.item_id!r}: {problem}")
        if not isinstance(self.comment, str):
            raise InvalidInput(f"comment of item {self.item_id!r} must be text")
        return self

    def attrs(self) -> dict[str, Any]:
        """The item's Gorse fields as catalogue columns: ``categories``, ``comment``,
        ``timestamp`` and the labels. Labels that are an object become one column per label
        (``labels.brand``, ``labels.size.eu`` for nested ones), so that catalogue filters
        reach them (``where labels.brand=Acme``); other labels are the ``labels`` column."""
        out: dict[str, Any] = {"categories": list(dict.fromkeys(self.categories)), "comment": self.comment,
                               "timestamp": None if self.timestamp is None else format_time(self.timestamp)}
        return {**out, **_flatten(LABELS, self.labels)}

    @classmethod
    def of(cls, item: Item) -> "GorseItem":
        """A catalogue item as Gorse sees it (an item from a CSV import too: no categories,
        labels or comment unless it has those columns)."""
        a = item.attrs
        categories = a.get("categories")
        return cls(item.item_id, item.hidden,
                   [str(c) for c in categories] if isinstance(categories, list) else [],
                   _stored_time(a.get("timestamp")), _unflatten(a), str(a.get("comment") or ""))

    def to_dict(self) -> dict[str, Any]:
        """Gorse's JSON shape."""
        return {"ItemId": self.item_id, "IsHidden": self.is_hidden, "Categories": self.categories,
                "Timestamp": format_time(self.timestamp), "Labels": self.labels, "Comment": self.comment}


LABELS = "labels"
"""The column of an item's labels, and the prefix of its label columns when they are an object."""


def _flatten(prefix: str, labels: Any) -> dict[str, Any]:
    """Labels as columns (see :meth:`GorseItem.attrs`); None: no columns."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        return {prefix: labels}
    return {column: value for name, v in labels.items() for column, value in _flatten(f"{prefix}.{name}", v).items()}


def _unflatten(attrs: Mapping[str, Any]) -> Any:
    """The labels whose columns :func:`_flatten` made (None when the item has none)."""
    if LABELS in attrs:
        return attrs[LABELS]
    columns = {k[len(LABELS) + 1:]: v for k, v in attrs.items() if k.startswith(LABELS + ".")}
    if not columns:
        return None
    out: dict[str, Any] = {}
    for path, value in sorted(columns.items()):
        *parents, leaf = path.split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return out


def _stored_time(value: Any) -> datetime | None:
    """A ``timestamp`` column as a time; None when absent or not one (a CSV's own column of
    that name may hold anything)."""
    try:
        return parse_time(value) if isinstance(value, str) else None
    except InvalidInput:
        return None


def _is_gorse_column(column: str) -> bool:
    return column in ("categories", "comment", "timestamp", LABELS) or column.startswith(LABELS + ".")


def user_json(user: User) -> dict[str, Any]:
    """A profile in Gorse's JSON shape."""
    return {"UserId": user.user_id, "Labels": user.labels, "Comment": user.comment, "Subscribe": user.subscribe}


class Gorse:
    """Gorse's operations over one home. Cheap to create; as thread-safe as the home."""

    def __init__(self, ss: "StyleSense") -> None:
        self.ss = ss
        self.users = UserStore(ss.store.engine)

    # -- feedback types -----------------------------------------------------------------
    def feedback_types(self) -> dict[str, str]:
        """Gorse FeedbackType -> event type, for the home as it is now."""
        return feedback_types(self.ss.config, self.ss.behaviour.weights)

    def set_feedback_types(self, changes: Mapping[str, str | None]) -> dict[str, str]:
        """Map Gorse feedback types to event types in the home's config (None: drop the
        mapping), beside those it has; each target must be an event type the home weighs.
        Returns the whole map. (``stylesense config gorse_feedback_types=...`` sets all of
        them at once: :func:`parse_feedback_types`.)"""
        check_feedback_types(changes, self.ss.behaviour.weights)

        def change(config: Config) -> None:
            mapping = {**(config.gorse_feedback_types or {}), **changes}
            config.gorse_feedback_types = {k: v for k, v in mapping.items() if v is not None} or None

        self.ss.update_config(change)
        return self.feedback_types()

    def event_type(self, feedback_type: str, mapping: Mapping[str, str] | None = None) -> str:
        """The event type a Gorse feedback type is stored as; InvalidInput for an unmapped one."""
        mapping = self.feedback_types() if mapping is None else mapping
        kind = mapping.get(feedback_type)
        if kind is None:
            raise InvalidInput(f"unknown feedback type {feedback_type!r} (known: {', '.join(sorted(mapping))}); "
                               "map it to an event type with the home's gorse_feedback_types")
        return kind

    def _gorse_type(self, event: "StoredEvent", mapping: Mapping[str, str], asked: str | None) -> str:
        if asked is not None:
            return asked
        if mapping.get(event.type) == event.type:
            return event.type
        return next((name for name in sorted(mapping) if mapping[name] == event.type), event.type)

    # -- feedback -----------------------------------------------------------------------
    def insert_feedback(self, feedback: Sequence[Feedback], *, overwrite: bool = False) -> int:
        """Store the feedback as events in one transaction, all or none (one bad feedback
        stores nothing: ``EventStore.add_many``'s rules); each new shopper gets a profile.
        Feedback already stored (same type, user, item and time) is not stored twice, so a
        retried batch is harmless. ``overwrite`` (Gorse's ``PUT``): each feedback replaces the
        shopper's stored events of its type on its item (``EventStore.replace_many``).
        Returns how many were given, as Gorse's RowAffected does."""
        if not feedback:
            return 0
        mapping = self.feedback_types()
        events = [f.event(self.event_type(f.feedback_type, mapping)) for f in feedback]
        store = self.ss.behaviour.events
        if overwrite:
            store.replace_many(events)
        else:
            store.add_many(events)
        self.users.ensure(f.user_id for f in feedback)
        return len(feedback)

    def feedback(
        self,
        *,
        feedback_type: str | None = None,
        user_id: str | None = None,
        item_id: str | None = None,
        cursor: str | None = None,
        n: int | None = None,
    ) -> tuple[list[Feedback], str]:
        """Stored feedback, oldest first: of one type, user and/or item where given; a page of
        ``n`` from ``cursor`` and the next page's cursor ("" after the last), or all of it
        when ``n`` is None."""
        mapping = self.feedback_types()
        types = None if feedback_type is None else [self.event_type(feedback_type, mapping)]
        for value, what in ((user_id, "user id"), (item_id, "item id")):
            if value is not None:
                check_id(value, what)
        limit = None if n is None else _check_page(n) + 1
        events = self.ss.behaviour.events.events(user_id=user_id, item_id=item_id, types=types,
                                                 after_pk=_pk_cursor(cursor), limit=limit)
        more = n is not None and len(events) > n
        events = events[:n] if n is not None else events
        out = [Feedback.of(self._gorse_type(e, mapping, feedback_type), e) for e in events]
        return out, _cursor(str(events[-1].pk)) if more else ""

    def delete_feedback(self, user_id: str, item_id: str, feedback_type: str | None = None) -> int:
        """Delete a shopper's feedback on an item (of one type, or all); how many there were."""
        types = None if feedback_type is None else [self.event_type(feedback_type)]
        return self.ss.behaviour.events.delete(check_id(user_id, "user id"), check_id(item_id, "item id"), types)

    # -- recommendations ----------------------------------------------------------------
    def recommend(
        self,
        user_id: str,
        n: int = 10,
        offset: int = 0,
        *,
        categories: Sequence[str] = (),
        write_back_type: str | None = None,
        write_back_delay: timedelta = timedelta(0),
    ) -> list[Recommendation]:
        """Items ``offset .. offset + n`` of the shopper's recommendations by the default
        model, in every one of ``categories``; while no model is trained, the most popular
        items. ``write_back_type``: record each item returned as feedback of that type (e.g.
        an impression), timed now + ``write_back_delay``."""
        check_id(user_id, "user id")
        if write_back_type is not None:
            self.event_type(write_back_type)
        if self.ss.config.recommender is None:  # what the shopper has is left out as a trained model would
            seen = self._read(user_id) if self.ss.behaviour.exclude_seen else set()
            recs = self._ranked(lambda k, f: self._popular(k, f, seen), n, offset, categories)
        else:
            recs = self._ranked(lambda k, f: self.ss.behaviour.recommend(user_id, k, filters=f), n, offset, categories)
        if write_back_type is not None and recs:
            when = datetime.now(timezone.utc) + write_back_delay
            self.insert_feedback([Feedback(write_back_type, user_id, r.item_id, when) for r in recs])
        return recs

    def popular(self, n: int = 10, offset: int = 0, *, categories: Sequence[str] = (),
                user_id: str | None = None) -> list[Recommendation]:
        """Items ``offset .. offset + n`` of the most popular (``Behaviour.popular``: the most
        shoppers, from the event log; no model needed), in every one of ``categories``,
        less those ``user_id`` has where given (Gorse's "remove read items")."""
        seen = set() if user_id is None else self._read(check_id(user_id, "user id"))
        return self._ranked(lambda k, f: self._popular(k, f, seen), n, offset, categories)

    def latest(self, n: int = 10, offset: int = 0, *, categories: Sequence[str] = (),
               user_id: str | None = None) -> list[Recommendation]:
        """Items ``offset .. offset + n`` by their Gorse ``Timestamp``, newest first (the score:
        seconds since 1970, as Gorse's), in every one of ``categories``, less those
        ``user_id`` has where given. Items without a timestamp (e.g. from a CSV import) are
        not among them; nor are those never recommended (hidden, out of stock). Reads the
        catalogue through, as a catalogue filter does."""
        from stylesense.recommenders import Recommendation

        _check_range(n, offset)
        seen = set() if user_id is None else self._read(check_id(user_id, "user id"))
        wanted = InCategories(categories=tuple(categories))
        dated = [(when, it.pk, it.item_id) for it in self.ss.store.items()
                 if not it.hidden and it.in_stock and it.item_id not in seen and wanted.matches(it.attrs)
                 and (when := _stored_time(it.attrs.get("timestamp"))) is not None]
        dated.sort(reverse=True)  # ties: the item added last first
        return [Recommendation(item_id, float(math.floor(when.timestamp())))
                for when, _, item_id in dated[offset:offset + n]]

    def neighbors(self, item_id: str, n: int = 10, offset: int = 0, *,
                  categories: Sequence[str] = ()) -> list[Recommendation]:
        """Items like ``item_id`` by the default model (NotReady while none is trained), those
        it finds alike at all (a score above 0, as Gorse lists only similar items): a catalogue
        item nobody interacted with has none yet; an id neither knows is NotFound."""
        check_id(item_id, "item id")

        def alike(k: int, filters: Filters | None) -> list[Recommendation]:
            return [r for r in self.ss.behaviour.similar(item_id, k, filters=filters) if r.score > 0]

        try:
            return self._ranked(alike, n, offset, categories)
        except NotFound:
            if self.ss.store.items([item_id]):
                return []
            raise NotFound(f"item {item_id} not found") from None

    def user_neighbors(self, user_id: str, n: int = 10, offset: int = 0) -> list[UserScore]:
        """Shoppers ``offset .. offset + n`` most like ``user_id`` by the default model's
        histories (``Behaviour.similar_users``: cosine; NotReady while no model is trained).
        A shopper the model does not know yet has none; one with neither a profile nor events
        is NotFound."""
        check_id(user_id, "user id")
        _check_range(n, offset)
        found = self.ss.behaviour.similar_users(user_id, n + offset)[offset:]
        if not found and not self._known_user(user_id):
            raise NotFound(f"user {user_id} not found")
        return [UserScore(u, s) for u, s in found]

    def _known_user(self, user_id: str) -> bool:
        """Whether the shopper has a profile or an event."""
        try:
            self.users.get(user_id)
        except NotFound:
            return bool(self.ss.behaviour.events.events(user_id=user_id, limit=1))
        return True

    def session_recommend(self, feedback: Sequence[Feedback], n: int = 10, offset: int = 0, *,
                          categories: Sequence[str] = ()) -> list[Recommendation]:
        """Recommendations for an anonymous session's feedback, scored by the default model as
        a history that belongs to nobody (``Behaviour.recommend_session``; NotReady while no
        model is trained); nothing is stored. Feedback types map as for insertion."""
        mapping = self.feedback_types()
        events = [(f.item_id, self.event_type(f.feedback_type, mapping))
                  for f in sorted(feedback, key=lambda f: f.timestamp or _DAWN)]  # oldest first; untimed first
        return self._ranked(lambda k, f: self.ss.behaviour.recommend_session(events, k, filters=f), n, offset,
                            categories)

    def _ranked(self, rank: Callable[[int, Filters | None], list[Recommendation]], n: int, offset: int,
                categories: Sequence[str]) -> list[Recommendation]:
        """Items ``offset .. offset + n`` of ``rank(k, filters)``, in every one of
        ``categories`` (Gorse's paging: rank the first ``offset + n``, drop the first ``offset``)."""
        _check_range(n, offset)
        if not categories:
            return rank(n + offset, None)[offset:]
        try:
            return rank(n + offset, InCategories(categories=tuple(categories)))[offset:]
        except FilterError:  # raised when no item has a categories column: none is in one
            return []

    def _read(self, user_id: str) -> set[str]:
        """The items a shopper has an event with (Gorse's "read items")."""
        return {e.item_id for e in self.ss.behaviour.events.events(user_id=user_id)}

    def _popular(self, k: int, filters: Filters | None, seen: Collection[str]) -> list[Recommendation]:
        """The ``k`` most popular items (``Behaviour.popular``, from the event log) not in ``seen``."""
        return [r for r in self.ss.behaviour.popular(k + len(seen), filters=filters) if r.item_id not in seen][:k]

    # -- items --------------------------------------------------------------------------
    def insert_items(self, items: Sequence[GorseItem]) -> int:
        """Insert or replace items (all are checked before any is written): an existing item
        gets these Gorse fields in place of its old ones, and keeps its photo and its other
        columns (e.g. from a CSV import). Returns how many were given."""
        checked = {i.item_id: i.checked() for i in items}  # the last one given for an id wins
        for item_id, item in checked.items():
            attrs = item.attrs()
            try:
                old = self.ss.item(item_id)
            except NotFound:
                self.ss.put_item(item_id, attrs)
                if item.is_hidden:
                    self.ss.set_hidden([item_id], True)
                continue
            dropped = {c: None for c in old.attrs if _is_gorse_column(c) and c not in attrs}
            self.ss.patch_item(item_id, {**dropped, **attrs}, hidden=item.is_hidden)
        return len(items)

    def patch_item(self, item_id: str, *, is_hidden: bool | None = None, categories: list[str] | None = None,
                   timestamp: datetime | None = None, labels: Any = None, comment: str | None = None) -> GorseItem:
        """Change the given fields of a catalogue item (None: unchanged); NotFound when none."""
        old = self.item(item_id)
        new = GorseItem(item_id, old.is_hidden if is_hidden is None else is_hidden,
                        old.categories if categories is None else categories,
                        old.timestamp if timestamp is None else timestamp,
                        old.labels if labels is None else labels,
                        old.comment if comment is None else comment)
        self.insert_items([new])
        return new

    def item(self, item_id: str) -> GorseItem:
        try:
            return GorseItem.of(self.ss.item(item_id))
        except NotFound:
            raise NotFound(f"item {item_id} not found") from None  # Gorse's words, which its clients show

    def items_by_id(self, item_ids: Sequence[str]) -> dict[str, GorseItem]:
        """The catalogue items of ``item_ids`` (those there are), read at once."""
        return {it.item_id: GorseItem.of(it) for it in self.ss.store.items(list(item_ids))}

    def items(self, cursor: str | None, n: int) -> tuple[list[GorseItem], str]:
        """A page of at most ``n`` catalogue items (hidden ones too) and the next page's
        cursor; a page holds at most the catalogue's MAX_PAGE, and the cursor says there is more."""
        from stylesense.engine import MAX_PAGE as ITEMS_PAGE

        if n < 1:
            raise InvalidInput(f"n must be at least 1, got {n}")
        page = self.ss.item_page(cursor or None, min(n, ITEMS_PAGE))
        return [GorseItem.of(i) for i in page.items], page.next_cursor or ""

    def delete_item(self, item_id: str) -> int:
        """Remove an item from the catalogue; 1 if it was there, else 0."""
        return len(self.ss.remove_items([check_id(item_id, "item id")]))

    def set_category(self, item_id: str, category: str, present: bool) -> GorseItem:
        """Put an item in ``category`` or take it out."""
        old = self.item(item_id)
        if present:
            categories = old.categories if category in old.categories else [*old.categories, category]
        else:
            categories = [c for c in old.categories if c != category]
        return self.patch_item(item_id, categories=categories)

    # -- users --------------------------------------------------------------------------
    def users_page(self, cursor: str | None, n: int) -> tuple[list[User], str]:
        users, after = self.users.page(_uncursor(cursor), _check_page(n))
        return users, _cursor(after)

    def delete_user(self, user_id: str) -> int:
        """Delete a shopper's profile and events; 1 if either existed, else 0."""
        had_profile = self.users.delete(check_id(user_id, "user id"))
        return int(bool(self.ss.behaviour.events.delete(user_id)) or had_profile)

