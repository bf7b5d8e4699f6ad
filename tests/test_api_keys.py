"""API keys (stylesense.serving.keys and `stylesense keys`): hashed storage, nesting roles,
refusals, several workers on one database, the per-key rate limit, and the CLI."""

import hashlib
import json
import math
import sqlite3
import threading
import time

import pytest
from typer.testing import CliRunner

from stylesense.catalog.store import make_engine
from stylesense.cli import app
from stylesense.engine import StyleSense
from stylesense.errors import InvalidInput, NotFound
from stylesense.serving.keys import ROLES, KeyStore, RateLimiter

from test_cli_startup import HEAVY, loaded_by

runner = CliRunner()


@pytest.fixture
def db(tmp_path):
    """The SQLite database of a real home."""
    StyleSense(tmp_path / "home")
    return tmp_path / "home" / "stylesense.db"


def store_on(db) -> KeyStore:
    """A KeyStore on its own engine, as one API worker process has."""
    return KeyStore(make_engine(f"sqlite:///{db}"))


def database_bytes(db) -> bytes:
    """The database file and its WAL: committed rows may still sit in the WAL."""
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def test_create_list_authenticate_revoke_round_trip(db):
    keys = store_on(db)
    key, info = keys.create("write", name="shop frontend", rate=5)
    assert key.startswith("ss_") and info.key_id in key and len(key) >= 3 + 12 + 1 + 43
    assert (info.role, info.name, info.rate, info.active) == ("write", "shop frontend", 5.0, True)
    assert info.created_at.tzinfo is not None

    assert keys.authenticate(key) == info
    assert keys.list() == [info]
    listed = info.to_dict()
    assert set(listed) == {"key_id", "role", "name", "rate", "created_at", "revoked_at"}
    assert key not in json.dumps(listed)

    revoked = keys.revoke("shop frontend")  # by name, or by id below
    assert revoked.key_id == info.key_id and not revoked.active and revoked.revoked_at >= info.created_at
    assert keys.authenticate(key) is None
    assert keys.revoke(info.key_id) == revoked, "revoking again changes nothing"
    assert keys.list() == [revoked]


def test_only_the_hash_is_stored(db):
    keys = store_on(db)
    key, info = keys.create("admin", name="ops")
    secret = key.rsplit("_", 1)[1]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT * FROM api_keys").fetchall()
        (stored,) = conn.execute("SELECT key_hash FROM api_keys WHERE key_id = ?", (info.key_id,)).fetchone()
    assert stored == hashlib.sha256(key.encode()).hexdigest()
    assert not any(key in str(cell) or secret in str(cell) for row in rows for cell in row)
    raw = database_bytes(db)
    assert stored.encode() in raw, "the bytes read are the ones the row was written to"
    assert key.encode() not in raw and secret.encode() not in raw


def test_roles_nest(db):
    keys = store_on(db)
    infos = {role: keys.create(role)[1] for role in ROLES}
    allowed = {(held, asked) for held in ROLES for asked in ROLES if infos[held].allows(asked)}
    assert allowed == {("read", "read"), ("write", "read"), ("write", "write"),
                       ("admin", "read"), ("admin", "write"), ("admin", "admin")}
    with pytest.raises(InvalidInput, match="role must be one of"):
        infos["admin"].allows("root")
    revoked = keys.revoke(infos["admin"].key_id)
    assert not revoked.allows("read")


@pytest.mark.parametrize("presented", [
    "", "ss_", "not a key", None, 42, b"ss_abc", "ss_" + "0" * 12 + "_" + "A" * 43,  # well-formed, unknown
    "ss_" + "Z" * 12 + "_" + "A" * 43, "x" * 10_000,
])
def test_malformed_and_unknown_keys_are_refused(db, presented):
    keys = store_on(db)
    keys.create("read")
    assert keys.authenticate(presented) is None


def test_wrong_secret_and_altered_keys_are_refused(db):
    keys = store_on(db)
    key, _ = keys.create("write")
    prefix, secret = key.rsplit("_", 1)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for wrong in (f"{prefix}_{flipped}", key + "A", key[:-1], key + "\n", " " + key, key.upper()):
        assert keys.authenticate(wrong) is None, wrong
    assert keys.authenticate(key) is not None


def test_bad_input_is_refused_with_a_clear_error(db):
    keys = store_on(db)
    for role in ("root", "READ", "", None):
        with pytest.raises(InvalidInput, match="role must be one of read, write, admin"):
            keys.create(role)
    for rate in (0, -1, math.nan, math.inf, True, "5"):
        with pytest.raises(InvalidInput, match="rate must be a finite number"):
            keys.create("read", rate=rate)
    for name in ("", " padded", "a" * 65, "tab\there", "0123456789ab"):
        with pytest.raises(InvalidInput, match="key name"):
            keys.create("read", name=name)
    keys.create("read", name="ci")
    with pytest.raises(InvalidInput, match="already named 'ci'"):
        keys.create("write", name="ci")
    with pytest.raises(NotFound, match="no API key has the id 'nobody'"):
        keys.revoke("nobody")
    assert len(keys.list()) == 1, "nothing refused was stored"


def test_a_name_is_free_again_once_its_key_is_revoked(db):
    keys = store_on(db)
    old, _ = keys.create("read", name="ci")
    keys.revoke("ci")
    new, info = keys.create("read", name="ci")
    assert keys.revoke("ci").key_id == info.key_id  # the active one
    with pytest.raises(NotFound):
        keys.revoke("ci")  # no active key has that name any more


def test_workers_on_one_database_share_keys_and_revocations(db):
    one, two = store_on(db), store_on(db)
    key, info = one.create("write", name="worker test")
    assert two.authenticate(key) == info
    two.revoke(info.key_id)
    assert one.authenticate(key) is None
    assert [k.key_id for k in one.list()] == [info.key_id]


def statements(store: KeyStore) -> list[str]:
    """Every SQL statement ``store`` runs from now on, as its engine sends them."""
    from sqlalchemy import event

    sent: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda conn, cursor, sql, *rest: sent.append(sql))
    return sent


def test_a_remembered_key_costs_one_query_and_a_revocation_elsewhere_counts_at_once(db, tmp_path):
    """A store remembers the keys it has checked, so a request costs one small query (the
    table's stamp) instead of reading the key's row; a key revoked by another process (the CLI
    here) is refused on the very next check all the same, and so is a key revoked meanwhile by
    another store in this process."""
    import subprocess
    import sys
    from pathlib import Path

    worker = store_on(db)
    key, info = worker.create("read", name="storefront")
    other, other_info = worker.create("write")
    assert worker.authenticate(key) == info
    sent = statements(worker)
    for _ in range(3):
        assert worker.authenticate(key) == info
    assert len(sent) == 3 and all("api_keys" in sql and "count" in sql for sql in sent), sent

    exe = Path(sys.executable).with_name("stylesense")
    subprocess.run([str(exe), "--home", str(db.parent), "keys", "revoke", "storefront"], check=True,
                   capture_output=True, timeout=60)
    assert worker.authenticate(key) is None
    assert worker.authenticate(key) is None, "the revoked key is not remembered again"
    assert worker.authenticate(other) == other_info, "other keys still work"

    store_on(db).revoke(other_info.key_id)
    assert worker.authenticate(other) is None


def test_no_check_that_starts_after_a_revocation_lets_the_key_through(db):
    """Threads authenticate one key without pause while another store (another worker) revokes
    it: every check that started after the revocation committed refuses the key, whichever
    thread filled the store's memory when."""
    worker, admin = store_on(db), store_on(db)
    key, info = worker.create("read")
    results: list[tuple[float, bool]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            started = time.monotonic()
            results.append((started, worker.authenticate(key) is not None))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    admin.revoke(info.key_id)
    revoked = time.monotonic()
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    before = [ok for started, ok in results if started < revoked]
    after = [ok for started, ok in results if started > revoked]
    assert before and any(before) and after, (len(before), len(after))
    assert not any(after), f"{sum(after)} of {len(after)} checks after the revocation let the key through"


def test_concurrent_creates_all_get_distinct_working_keys(db):
    keys = store_on(db)
    made: list[str] = []
    threads = [threading.Thread(target=lambda: made.append(keys.create("read")[0])) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 8 and all(keys.authenticate(k) for k in made)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_bursts_refuses_then_refills():
    clock = Clock()
    limiter = RateLimiter(clock)
    assert [limiter.check("a", 3) for _ in range(3)] == [None] * 3  # a burst of max(1, rate)
    wait = limiter.check("a", 3)
    assert wait == pytest.approx(1 / 3)
    assert limiter.check("b", 3) is None, "each key has its own bucket"
    clock.now += wait / 2
    assert limiter.check("a", 3) == pytest.approx(1 / 6), "a refused request costs nothing"
    clock.now += 1 / 6
    assert limiter.check("a", 3) is None
    clock.now += 3600
    assert [limiter.check("a", 3) for _ in range(4)][-1] > 0, "the bucket holds no more than its burst"


def test_rate_limiter_slow_rates_and_no_limit():
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.check("slow", 0.5) is None  # burst of 1 even below one request per second
    assert limiter.check("slow", 0.5) == pytest.approx(2.0)
    assert all(limiter.check("free", None) is None for _ in range(1000))
    with pytest.raises(InvalidInput):
        limiter.check("bad", 0)


def test_rate_limiter_real_clock_and_threads():
    """Threads racing on one key get the burst and what refilled meanwhile, never more."""
    limiter = RateLimiter()
    results: list[float | None] = []
    lock = threading.Lock()

    def hit() -> None:
        r = limiter.check("k", 20)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=hit) for _ in range(40)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    allowed = sum(r is None for r in results)
    assert 20 <= allowed <= 20 + math.ceil(elapsed * 20)
    waits = [r for r in results if r is not None]
    if waits:  # none on a machine so slow that the bucket refilled as fast as threads came
        assert all(0 < w <= 1 / 20 + 1e-9 for w in waits)
        time.sleep(max(waits) + 0.01)
        assert limiter.check("k", 20) is None


def run(home, *args):
    return runner.invoke(app, ["--home", str(home), "keys", *args])


def test_cli_create_list_revoke(tmp_path):
    home = tmp_path / "home"
    r = run(home, "create", "--role", "write", "--name", "frontend", "--rate", "2.5")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and r.stdout == lines[0] + "\n"
    key = lines[0]
    keys = KeyStore(StyleSense(home).store.engine)
    info = keys.authenticate(key)
    assert info is not None and (info.role, info.name, info.rate) == ("write", "frontend", 2.5)
    assert info.key_id in r.stderr and "cannot be shown again" in r.stderr

    r = run(home, "list", "--json")
    assert r.exit_code == 0, r.output
    listed = json.loads(r.stdout)
    assert [k["key_id"] for k in listed] == [info.key_id] and listed[0]["revoked_at"] is None
    assert key not in r.output and key.rsplit("_", 1)[1] not in r.output

    r = run(home, "list")
    assert r.exit_code == 0 and info.key_id in r.stdout and "frontend" in r.stdout and key not in r.output

    r = run(home, "revoke", "frontend")
    assert r.exit_code == 0, r.output
    assert info.key_id in r.stdout
    assert keys.authenticate(key) is None
    assert json.loads(run(home, "list", "--json").stdout)[0]["revoked_at"] is not None

    r = run(home, "revoke", "frontend")
    assert r.exit_code == 2 and "no API key has the id 'frontend'" in r.output


@pytest.mark.parametrize("args, message", [
    (["--role", "root"], "role must be one of read, write, admin"),
    (["--role", "read", "--rate", "0"], "rate must be a finite number"),
    (["--role", "read", "--rate", "nan"], "rate must be a finite number"),
    (["--role", "read", "--rate", "fast"], "Invalid value for '--rate'"),  # typer's own check
])
def test_cli_create_refuses_bad_role_and_rate(tmp_path, args, message):
    r = run(tmp_path / "home", "create", *args)
    assert r.exit_code == 2 and message in r.output
    assert "ss_" not in r.stdout, "no key was made"
    assert KeyStore(StyleSense(tmp_path / "home").store.engine).list() == []


def test_keys_commands_load_no_heavy_library(tmp_path):
    """keys.py (and SQLAlchemy with it) loads only when a keys command runs, never for help."""
    assert not loaded_by("keys", "--help") & {"sqlalchemy", "numpy", *HEAVY}
    assert not loaded_by("--home", str(tmp_path / "home"), "keys", "create", "--role", "read") & set(HEAVY)
