"""API keys for the HTTP surface: who may read, who may write, who manages keys, and how fast.

Keys live in the home's database (table ``api_keys``), so every API worker process on every
machine that shares the database sees a new key or a revocation on its very next request. A
:class:`KeyStore` remembers the active keys it has checked, but every
:meth:`KeyStore.authenticate` first reads the table's stamp (how many keys it holds, how many of
them are revoked: one small aggregate query, a fifth of the cost of reading a key's row through
the ORM): a revocation or a deleted row anywhere changes the stamp, and the store forgets every
key it remembered before using any of them again.

A key reads ``ss_<id>_<secret>``: the ``ss_`` prefix makes a leaked key recognisable (secret
scanners, logs), the id (12 hex characters, public: ``keys list`` shows it, ``keys revoke``
takes it) finds the row, and the secret is 32 random bytes from :func:`secrets.token_urlsafe`.
Only the SHA-256 of the whole key is stored; the plaintext is returned once, by
:meth:`KeyStore.create`.

Roles nest in the order of :data:`ROLES`: write includes read, admin includes write and may
manage keys. Rate limits are a property of the key (requests per second, none unless set when
the key is made); :class:`RateLimiter` enforces them.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import DateTime, Float, Integer, String, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from stylesense.errors import InvalidInput, NotFound

ROLES = ("read", "write", "admin")
"""Every role, weakest first; a role allows everything the roles before it allow."""

PREFIX = "ss_"
_ID_HEX = 12  # 48 bits: ids only have to be unique among one shop's keys (a clash is retried)
_SECRET_BYTES = 32
_KEY = re.compile(rf"{PREFIX}([0-9a-f]{{{_ID_HEX}}})_([A-Za-z0-9_-]{{43}})")
_ID = re.compile(rf"[0-9a-f]{{{_ID_HEX}}}")
_NAME_MAX = 64
_CREATE_TRIES = 3


class KeyBase(DeclarativeBase):
    pass


class ApiKeyRow(KeyBase):
    """One key. ``revoked_at`` is NULL while the key is active; a revoked key keeps its row so
    that ``keys list`` still tells who had access until when."""

    __tablename__ = "api_keys"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(_ID_HEX), unique=True, index=True)
    key_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the whole key, hex
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(_NAME_MAX), nullable=True, index=True)
    rate: Mapped[float | None] = mapped_column(Float, nullable=True)  # requests/s; NULL: no limit
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class KeyInfo:
    """A key as the app sees it: everything but the secret, which is never stored."""

    key_id: str
    role: str
    name: str | None
    rate: float | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, role: str) -> bool:
        """Whether this key may do what ``role`` may (roles nest; a revoked key may nothing)."""
        return self.active and ROLES.index(_check_role(role)) <= ROLES.index(self.role)

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "role": self.role, "name": self.name, "rate": self.rate,
                "created_at": self.created_at.isoformat(),
                "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat()}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes for what was stored in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _info(row: ApiKeyRow) -> KeyInfo:
    return KeyInfo(row.key_id, row.role, row.name, row.rate, _utc(row.created_at),
                   None if row.revoked_at is None else _utc(row.revoked_at))


def _digest(key: str) -> str:
    """SHA-256 of the key, hex. A plain fast hash is right here, unlike for passwords: a key
    holds 256 random bits, so no amount of guessing, fast hash or not, finds one from its
    hash, and nothing needs a salt (no two keys share a value; no table covers 2**256). A slow
    password hash (bcrypt, argon2) would only add its tens of milliseconds to every request."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _check_role(role: object) -> str:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role  # type: ignore[return-value]


def check_rate(rate: object) -> float | None:
    """``rate`` as a float: a finite number of requests per second above 0, or None (no
    limit); InvalidInput otherwise."""
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise InvalidInput(f"rate must be a finite number of requests per second above 0 (none: no limit), got {rate!r}")
    return float(rate)


def _check_name(name: object) -> str | None:
    if name is None:
        return None
    if (not isinstance(name, str) or not name or len(name) > _NAME_MAX or name != name.strip()
            or not name.isprintable()):
        raise InvalidInput(f"key name must be 1 to {_NAME_MAX} printable characters without "
                           f"leading or trailing spaces, got {name!r}")
    if _ID.fullmatch(name):  # revoke takes an id or a name: the two must not be confusable
        raise InvalidInput(f"key name {name!r} looks like a key id ({_ID_HEX} hex digits): choose another")
    return name


def parse_key(presented: object) -> str | None:
    """The id of a well-formed key, else None (any other string, any other type)."""
    if not isinstance(presented, str):
        return None
    match = _KEY.fullmatch(presented)
    return match.group(1) if match else None


class KeyStore:
    """Create, list, revoke and check API keys in the database behind ``engine`` (the home's:
    ``StyleSense(...).store.engine``). Any number of stores, in any number of processes, may
    share one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # its tables: make_engine's migrations (stylesense.migrations)
        # Active keys checked under one stamp of the table: (stamp, key id -> (hash, info)).
        # Replaced whole when the stamp changes, so a reader sees one generation or the next.
        self._known: tuple[tuple[int, int] | None, dict[str, tuple[str, KeyInfo]]] = (None, {})
        self._lock = threading.Lock()

    def create(self, role: str, name: str | None = None, rate: float | None = None) -> tuple[str, KeyInfo]:
        """A new key and its info. The plaintext key is in this return value only: store it
        now. A name held by an active key is refused, so that ``revoke(name)`` names one key
        (two processes creating the same name at the same instant can still both succeed;
        revoke then asks for the id)."""
        role, name, rate = _check_role(role), _check_name(name), check_rate(rate)
        for _ in range(_CREATE_TRIES):
            key_id = secrets.token_hex(_ID_HEX // 2)
            key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
            row = ApiKeyRow(key_id=key_id, key_hash=_digest(key), role=role, name=name, rate=rate,
                            created_at=_now())
            try:
                with Session(self.engine) as s, s.begin():
                    if name is not None and s.scalar(select(ApiKeyRow.key_id).where(
                            ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None))):
                        raise InvalidInput(f"an active key is already named {name!r}: choose another name "
                                           "or revoke that key first")
                    s.add(row)
                    s.flush()
                    return key, _info(row)
            except IntegrityError:  # the random id is taken (the only unique column): draw again
                continue
        raise RuntimeError(f"no free key id after {_CREATE_TRIES} draws")  # pragma: no cover - ~2**-48 each

    def list(self) -> list[KeyInfo]:
        """Every key, revoked ones too, oldest first; no secrets (none are stored)."""
        with Session(self.engine) as s:
            return [_info(r) for r in s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.pk))]

    def revoke(self, key_id_or_name: str) -> KeyInfo:
        """Revoke a key by its id, or by the name of an active key; its info, with the time it
        was revoked. Revoking a revoked key changes nothing (its first revocation time stays).
        NotFound when nothing matches; InvalidInput when several active keys share the name."""
        ref = key_id_or_name
        with Session(self.engine) as s, s.begin():
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_id == ref))
            if row is None:
                named = s.scalars(select(ApiKeyRow).where(ApiKeyRow.name == ref,
                                                          ApiKeyRow.revoked_at.is_(None))).all()
                if not named:
                    raise NotFound(f"no API key has the id {ref!r}, nor does an active key have that name: "
                                   "`stylesense keys list` shows the keys")
                if len(named) > 1:
                    raise InvalidInput(f"{len(named)} active keys are named {ref!r}: revoke one by its id "
                                       f"({', '.join(r.key_id for r in named)})")
                row = named[0]
            # One conditional UPDATE, so concurrent revocations keep the first time.
            s.execute(update(ApiKeyRow).where(ApiKeyRow.pk == row.pk, ApiKeyRow.revoked_at.is_(None))
                      .values(revoked_at=_now()))
            s.refresh(row)
            return _info(row)

    def authenticate(self, presented_key: object) -> KeyInfo | None:
        """The info of an active key, else None: for a malformed, unknown, wrong or revoked
        key alike, so a caller cannot tell which. One aggregate query for the table's stamp
        (see the module docstring), and for a key not remembered under that stamp one lookup
        by id on a unique index; the hashes are compared in constant time."""
        key_id = parse_key(presented_key)
        if key_id is None:
            return None
        digest = _digest(presented_key)  # type: ignore[arg-type]
        with self.engine.connect() as conn:
            stamp = tuple(conn.execute(_STAMP).one())
        with self._lock:
            if self._known[0] != stamp:
                self._known = (stamp, {})  # type: ignore[assignment]
            known = self._known[1]
        remembered = known.get(key_id)
        if remembered is None:
            # Read after the stamp: a revocation committed since then changes the stamp that
            # the next request reads, which forgets this entry again.
            with Session(self.engine) as s:
                row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_id == key_id))
                if row is None:
                    return None
                remembered = (row.key_hash, _info(row))
            if remembered[1].active:
                with self._lock:
                    if self._known[0] == stamp:  # not if another request saw a newer stamp meanwhile
                        self._known[1][key_id] = remembered
        key_hash, info = remembered
        if not hmac.compare_digest(key_hash, digest):
            return None
        return info if info.active else None


# The api_keys table's stamp: a revocation raises the second count, a deleted row lowers the first.
_STAMP = select(func.count(), func.count(ApiKeyRow.revoked_at)).select_from(ApiKeyRow)


class RateLimiter:
    """A token bucket per key id: a key may send ``max(1, rate)`` requests at once, then
    ``rate`` per second on average.

    The buckets live in this object, so the limit holds per worker process: with N API workers
    a key gets up to N times its rate in all. Sharing the count across processes would cost a
    database write (or another service) per request; a per-process limit already stops one
    client from flooding a worker. The app owns one instance; ``clock`` is seconds on a
    monotonic clock (tests pass their own).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, clock at last check)

    def check(self, key_id: str, rate: float | None) -> float | None:
        """None when the request may go ahead (and counts), else the seconds until it may (a
        refused request costs nothing). ``rate`` None: no limit. HTTP's Retry-After takes whole
        seconds: round the wait up."""
        rate = check_rate(rate)
        if rate is None:
            return None
        capacity = max(1.0, rate)
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(key_id, (capacity, now))
            tokens = min(capacity, tokens + (now - then) * rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return None
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / rate
