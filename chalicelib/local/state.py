"""Durable state of ``make run``: what the emulator holds survives a restart (docs/design.md, "Embedded state").

Under the state directory:

- ``journal.log``: every DynamoDB item and S3 object written, as its new image (a deletion: none), appended
  before the request that wrote it answers. Each record carries its length and CRC-32: a record torn by a
  kill -9 is dropped at start-up and the file cut there. Object bodies are files under ``blobs/`` named by
  their SHA-256, written before a record names them. Rewritten with the live images only (atomically) at
  start-up and in the background when it has grown.
- ``emulator.pickle``: everything else moto holds (tables, buckets and queues without their items, objects
  and messages; secrets; CloudFormation stacks and the resources they made in IAM, SSM, Lambda, S3, SQS …;
  the CloudFormation emulator's own state), one pickle so that references between services survive.
  Replaced atomically (temporary file, fsync, rename) after each request that changed any of it.
- ``executions/``: the history events of every execution, appended as they happen, so that
  GetExecutionHistory still answers for the executions a restart lost.

Not kept: Step Functions executions (the reconciler resumes every release that was running, which sends
again what the SQS queues held) and SQS messages (queues come back empty).
"""

from __future__ import annotations

import contextlib
import copy
import copyreg
import fcntl
import functools
import hashlib
import importlib
import inspect
import json
import os
import pickle
import shutil
import struct
import sys
import threading
import urllib.parse
import weakref
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .preflight import StartupError

FORMAT = 1
SNAPSHOT = "emulator.pickle"
JOURNAL = "journal.log"
BLOBS = "blobs"
EXECUTIONS = "executions"
LOCK_FILE = "lock"
# What RESET removes: only what the store wrote (the directory may be one the user chose).
OWNED = (SNAPSHOT, JOURNAL, BLOBS, EXECUTIONS, f"{SNAPSHOT}.tmp", f"{JOURNAL}.tmp")
# The journal is compacted when it is this big and this many times the size it had after the last compaction.
COMPACT_MIN_BYTES = 16 * 1024 * 1024
COMPACT_GROWTH = 4
SYNC_SECONDS = 1.0
# Services not kept: executions are resumed, not restored; STS keeps nothing a restart needs.
NOT_KEPT = frozenset({"stepfunctions", "sts", "moto_api"})
_FRAME = struct.Struct(">II")  # payload length, CRC-32 of the payload
_READ_PREFIXES = (
    "Get", "Describe", "List", "Query", "Scan", "BatchGet", "TransactGet", "Head", "Search", "Lookup",
    "Filter", "Validate", "Estimate", "Test", "Simulate", "Receive", "Select", "Check", "Preview", "Detect",
)  # fmt: skip
# Actions whose effect is journaled (items, objects), not kept (messages) or nothing to keep (Invoke).
_NOT_STRUCTURAL = {
    "dynamodb": {
        "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems", "ExecuteStatement",
        "BatchExecuteStatement", "ExecuteTransaction",
    },
    "sqs": {
        "SendMessage", "SendMessageBatch", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch", "PurgeQueue",
    },
    "awslambda": {"Invoke", "InvokeAsync", "InvokeWithResponseStream"},
}  # fmt: skip

_store: StateStore | None = None
_installed = False
_local = threading.local()


# --- framing: length + CRC-32, so that a torn or corrupt tail is recognised -----------------------------------


def frame(payload: bytes) -> bytes:
    """One journal record."""
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def unframe(data: bytes) -> tuple[list[bytes], int]:
    """The payloads of the whole, intact records at the start of ``data`` and how many bytes they span."""
    records: list[bytes] = []
    offset = 0
    while offset + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, offset)
        end = offset + _FRAME.size + length
        payload = data[offset + _FRAME.size : end]
        if end > len(data) or zlib.crc32(payload) != crc:
            break
        records.append(payload)
        offset = end
    return records, offset


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, chunks: Iterable[bytes]) -> None:
    """Replace ``path`` with ``chunks``: a temporary file, fsync, rename, fsync of the directory.

    A crash at any moment leaves either the old file or the new one, whole.
    """
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in chunks:
            _write_all(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    _fsync_directory(path.parent)


class Journal:
    """An append-only file of framed records; ``replace`` rewrites it atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._fd = -1
        self._lock = threading.Lock()
        self._unsynced = False

    def read(self) -> list[bytes]:
        """Every intact record; a torn tail is cut off the file."""
        data = self.path.read_bytes() if self.path.exists() else b""
        records, intact = unframe(data)
        if intact < len(data):
            print(
                f"stagecoach: {self.path}: dropped {len(data) - intact} bytes of a record cut short (a crash)",
                file=sys.stderr,
            )
            os.truncate(self.path, intact)
        return records

    def open(self) -> None:
        """Open for appending."""
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.size = os.fstat(self._fd).st_size

    def append(self, payloads: list[bytes]) -> None:
        """Append records in one write (the kernel has them when this returns: they survive a kill -9)."""
        data = b"".join(frame(p) for p in payloads)
        with self._lock:
            _write_all(self._fd, data)
            self.size += len(data)
            self._unsynced = True

    def replace(self, payloads: Iterable[bytes]) -> None:
        """Rewrite the journal with ``payloads`` (atomically) and append after them from now on."""
        with self._lock:
            write_atomically(self.path, (frame(p) for p in payloads))
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o644)
            self.size = os.fstat(self._fd).st_size
            self._unsynced = False

    def sync(self) -> None:
        """fsync what was appended since the last sync (a power loss then loses nothing before it); appends
        go on meanwhile."""
        with self._lock:
            if not self._unsynced or self._fd < 0:
                return
            fd = os.dup(self._fd)  # stays valid if the journal is replaced meanwhile
            self._unsynced = False
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Sync and close."""
        self.sync()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


# --- pickling moto's objects ---------------------------------------------------------------------------------


class _Fresh:
    """A defaultdict factory returning a copy of ``template``: stands in for a lambda, which cannot be pickled."""

    def __init__(self, template: Any) -> None:
        self.template = template

    def __call__(self) -> Any:
        return copy.deepcopy(self.template)


def _new_lock(reentrant: bool) -> Any:
    return threading.RLock() if reentrant else threading.Lock()


def _new_event(is_set: bool) -> threading.Event:
    event = threading.Event()
    if is_set:
        event.set()
    return event


def _weak_values(values: dict[Any, Any]) -> weakref.WeakValueDictionary[Any, Any]:
    return weakref.WeakValueDictionary(values)


def _set_attributes(obj: Any, state: dict[str, Any]) -> None:
    obj.__dict__.update(state)


def _load_key(blobs: Path, cls: Any, state: dict[str, Any], digest: str) -> Any:
    """An S3 object (FakeKey) with its body read back from the blob ``digest``."""
    key = cls.__new__(cls)
    key.__setstate__({**state, "value": (blobs / digest[:2] / digest).read_bytes()})
    return key


def _factory(factory: Any) -> Any:
    return _Fresh(factory()) if factory is not None and _is_local(factory) else factory


def _dict_state(obj: dict[Any, Any]) -> dict[str, Any]:
    return {
        "attributes": dict(obj.__dict__),
        "items": list(dict.items(obj)),
        "factory": _factory(obj.default_factory) if isinstance(obj, defaultdict) else None,
    }


def _set_dict_state(obj: dict[Any, Any], state: dict[str, Any]) -> None:
    if isinstance(obj, defaultdict):
        obj.default_factory = state["factory"]
    obj.__dict__.update(state["attributes"])
    dict.update(obj, state["items"])  # as stored, past a subclass's __setitem__


@functools.cache
def _raw_dict(kind: Any) -> bool:
    """A dict subclass that pickle would rebuild by calling its ``__init__`` with no (or the wrong) arguments,
    like moto's SSM ParameterDict: rebuilt from its attributes and its items as stored instead."""
    if not issubclass(kind, dict) or kind in (dict, defaultdict) or issubclass(kind, OrderedDict):
        return False
    base: type = defaultdict if issubclass(kind, defaultdict) else dict
    if kind.__reduce_ex__ is not base.__reduce_ex__ or kind.__reduce__ is not base.__reduce__:
        return False  # the class pickles itself
    try:
        parameters = list(inspect.signature(kind.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    return any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


def _is_local(function: Any) -> bool:
    return "<lambda>" in getattr(function, "__qualname__", "") or "<locals>" in getattr(function, "__qualname__", "")


@functools.cache
def _stripped_fields() -> dict[type, dict[str, Callable[[Any], Any] | None]]:
    """Per moto class, the attributes a snapshot leaves out (journaled or not kept), with their empty value."""
    from moto.cloudformation.models import CloudFormationBackend
    from moto.dynamodb.models.table import Table
    from moto.s3.models import FakeBucket, MultipartDict
    from moto.s3.utils import _VersionedKeyStore
    from moto.sqs.models import Queue

    return {
        Table: {"items": lambda items: type(items)(dict) if isinstance(items, defaultdict) else {}},
        FakeBucket: {"keys": lambda _: _VersionedKeyStore(), "multiparts": lambda _: MultipartDict()},
        Queue: {"_messages": lambda _: [], "_pending_messages": lambda _: set(), "deleted_messages": lambda _: set()},
        CloudFormationBackend: {"_stagecoach_cfn": None},  # exported on its own (times as ages)
    }


class _Pickler(pickle.Pickler):
    """pickle, plus what moto's objects need: new locks and conditions instead of the old ones, weak and
    lambda-made dictionaries as plain data, the stripped attributes of ``_stripped_fields``, and S3 object
    bodies as blobs (files named by their SHA-256) rather than inline."""

    def __init__(self, file: Any, blobs: Path, written: set[str]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._blobs = blobs
        self._written = written
        self.digests: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        kind: Any = type(obj)
        if kind is _LOCK_TYPE or kind is _RLOCK_TYPE:
            return _new_lock, (kind is _RLOCK_TYPE,)
        if kind is threading.Condition:
            return threading.Condition, ()
        if kind is threading.Event:
            return _new_event, (obj.is_set(),)
        if kind is weakref.WeakValueDictionary:
            return _weak_values, (dict(obj.items()),)
        if kind is defaultdict and obj.default_factory is not None and _is_local(obj.default_factory):
            return defaultdict, (_Fresh(obj.default_factory()),), None, None, iter(obj.items())
        if _raw_dict(kind):
            return copyreg.__newobj__, (kind,), _dict_state(obj), None, None, _set_dict_state  # type: ignore[attr-defined]
        if _is_fake_key(kind):
            return self._key(obj)
        stripped = _stripped_for(kind)
        if stripped:
            state = dict(obj.__dict__)
            for name, empty in stripped.items():
                if name in state and empty is None:
                    del state[name]
                elif name in state and empty is not None:
                    state[name] = empty(state[name])
            return copyreg.__newobj__, (kind,), state, None, None, _set_attributes  # type: ignore[attr-defined]
        return NotImplemented

    def _key(self, key: Any) -> Any:
        state = key.__getstate__()
        value = state.pop("value")
        data = value.encode() if isinstance(value, str) else bytes(value)
        digest = hashlib.sha256(data).hexdigest()
        self.digests.add(digest)
        if digest not in self._written:
            path = self._blobs / digest[:2] / digest
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(path, [data])
            self._written.add(digest)
        return _load_key, (type(key), state, digest)


_LOCK_TYPE = type(threading.Lock())
_RLOCK_TYPE = type(threading.RLock())


@functools.cache
def _fake_key_types() -> tuple[type, ...]:
    from moto.s3.models import FakeKey

    return (FakeKey,)


def _is_fake_key(kind: type) -> bool:
    return issubclass(kind, _fake_key_types())


_stripped_cache: dict[type, dict[str, Callable[[Any], Any] | None] | None] = {}


def _stripped_for(kind: type) -> dict[str, Callable[[Any], Any] | None] | None:
    if kind not in _stripped_cache:
        _stripped_cache[kind] = next((v for k, v in _stripped_fields().items() if issubclass(kind, k)), None)
    return _stripped_cache[kind]


class _Unpickler(pickle.Unpickler):
    """Loads what ``_Pickler`` wrote, reading object bodies from ``blobs``."""

    def __init__(self, file: Any, blobs: Path) -> None:
        super().__init__(file)
        self._blobs = blobs

    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name == "_load_key":
            return functools.partial(_load_key, self._blobs)
        return super().find_class(module, name)


# --- the store -----------------------------------------------------------------------------------------------


class SharedExclusiveLock:
    """Many holders of the shared side (requests that change the emulator) or one of the exclusive side
    (a snapshot being taken); a thread that already holds the shared side takes it again at once."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._local = threading.local()

    @property
    def held_shared(self) -> bool:
        """Whether this thread holds the shared side."""
        return bool(getattr(self._local, "depth", 0))

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the shared side."""
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._condition:
                while self._exclusive:
                    self._condition.wait()
                self._shared += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._condition:
                    self._shared -= 1
                    if not self._shared:
                        self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the exclusive side (no shared holder meanwhile)."""
        with self._condition:
            while self._exclusive or self._shared:
                self._condition.wait()
            self._exclusive = True
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                self._condition.notify_all()


@dataclass
class Costs:
    """What persistence cost so far (docs/design.md quotes them)."""

    snapshots: int = 0
    snapshot_seconds: float = 0.0
    snapshot_bytes: int = 0
    journal_records: int = 0
    restore_seconds: float = 0.0
    restored_records: int = 0
    compactions: int = 0


class StateStore:
    """The state directory of one running control plane (``open`` … ``close``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.journal = Journal(directory / JOURNAL)
        self.blobs = directory / BLOBS
        self.executions = directory / EXECUTIONS
        self.exclusion = SharedExclusiveLock()
        self.costs = Costs()
        self.recording = False
        self._lock_fd = -1
        self._generation = 0
        self._persisted = 0
        self._generation_lock = threading.Lock()
        self._written_blobs: set[str] = set()
        self._compacted_size = 0
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        self._execution_dirs: set[Path] = set()
        self._warned: set[str] = set()

    # -- lifecycle --

    def open(self, reset: bool = False) -> "StateStore":
        """Take the directory (one control plane at a time), empty it if ``reset``, load what it holds into
        the emulator, compact, and record from now on. StartupError if it is in use or cannot be read."""
        install()
        self._take_lock()
        try:
            if reset:
                self.clear()
            self.blobs.mkdir(exist_ok=True)
            self.executions.mkdir(exist_ok=True)
            self._written_blobs = {p.name for p in self.blobs.glob("*/*") if not p.name.endswith(".tmp")}
            started = _clock()
            self._restore()
            self.costs.restore_seconds = _clock() - started
            self.journal.open()
            if self.costs.restored_records > _live_count():  # records that later ones replaced
                self._compact()
            else:
                self._compacted_size = self.journal.size
            self._write_snapshot()
        except BaseException:
            self.journal.close()
            self._release_lock()
            raise
        global _store
        _store = self
        self.recording = True
        self._syncer = threading.Thread(target=self._sync_loop, name="state-sync", daemon=True)
        self._syncer.start()
        return self

    def close(self) -> None:
        """A last snapshot, the journal synced; the directory is free for the next control plane."""
        global _store
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join(timeout=10)
        try:
            with self.exclusion.exclusive():
                self._write_snapshot()
        except Exception as exc:
            self.warn(f"could not write the last snapshot, the latest changes are not kept ({exc!r})")
        finally:
            self.recording = False
            if _store is self:
                _store = None
            self.journal.close()
            self._release_lock()

    def clear(self) -> None:
        """Remove everything the store wrote in the directory (``make run RESET=1``)."""
        for name in OWNED:
            path = self.directory / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Record nothing meanwhile (the bench times webhooks with and without durable state in one run)."""
        was, self.recording = self.recording, False
        try:
            yield
        finally:
            self.recording = was

    def _take_lock(self) -> None:
        path = self.directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartupError(
                f"state directory {self.directory} is in use by another make run (pid {owner}); "
                "stop it or run with STATE_DIR=<another directory>"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing releases the flock (a killed process's lock goes with it)
            self._lock_fd = -1

    def _sync_loop(self) -> None:
        while not self._stop.wait(SYNC_SECONDS):
            try:
                self.journal.sync()
                if self.journal.size > max(COMPACT_MIN_BYTES, COMPACT_GROWTH * self._compacted_size):
                    self._compact()
            except Exception as exc:  # keep syncing; say why
                self.warn(f"could not sync or compact the journal ({exc!r})")

    # -- restore --

    def _restore(self) -> None:
        snapshot = self.directory / SNAPSHOT
        try:
            if snapshot.exists():
                self._load_snapshot(snapshot.read_bytes())
            for payload in self.journal.read():
                self._replay(payload)
                self.costs.restored_records += 1
        except StartupError:
            raise
        except Exception as exc:
            raise StartupError(
                f"state directory {self.directory} cannot be read ({type(exc).__name__}: {exc}); "
                "run make run RESET=1 to start empty (or move the directory away)"
            ) from None

    def _loads(self, payload: bytes) -> Any:
        import io

        return _Unpickler(io.BytesIO(payload), self.blobs).load()

    def _load_snapshot(self, data: bytes) -> None:
        import moto

        from . import cloudformation

        header, _, body = data.partition(b"\n")
        expected = f"stagecoach-state {FORMAT} moto {moto.__version__}".encode()
        if header != expected:
            raise StartupError(
                f"state directory {self.directory} was written by another version ({header.decode(errors='replace')}, "
                f"this is {expected.decode()}); run make run RESET=1 to start empty (or move the directory away)"
            )
        snapshot = self._loads(body)
        for module_name, attribute, extras, accounts in snapshot["services"]:
            backends = getattr(importlib.import_module(module_name), attribute)
            backends.clear()
            for account_id, regions in accounts.items():
                account = backends[account_id]
                for region, backend in regions.items():
                    dict.__setitem__(account, region, backend)
            backends.__dict__.update(extras)
        cloudformation.import_state(snapshot["cloudformation"])
        for bucket in _buckets():
            _own(bucket)

    def _replay(self, payload: bytes) -> None:
        try:
            record = self._loads(payload)
        except FileNotFoundError as exc:  # an object whose body file was removed by hand: the rest comes back
            self.warn(f"an S3 object is lost, its body is missing ({exc.filename})")
            return
        kind = record[0]
        if kind == "item":
            _, account_id, region, name, hash_json, range_json, image = record
            table = _table(account_id, region, name)
            if table is None:
                return
            from moto.dynamodb.models.dynamo_type import DynamoType

            if image is None:
                table.delete_item(DynamoType(hash_json), DynamoType(range_json) if range_json else None)
            else:
                table.put_item(image, overwrite=True)
        elif kind == "object":
            _, account_id, partition, name, key_name, versions = record
            bucket = _bucket(account_id, partition, name)
            if bucket is None:
                return
            if versions:
                dict.__setitem__(bucket.keys, key_name, list(versions))
            else:
                dict.pop(bucket.keys, key_name, None)
        elif kind == "drop-table":
            table = _table(*record[1:])
            if table is not None:
                table.items.clear()
        elif kind == "drop-bucket":
            bucket = _bucket(*record[1:])
            if bucket is not None:
                dict.clear(bucket.keys)

    # -- recording --

    def changed(self) -> int:
        """Note a change the snapshot must hold; returns its generation for ``persist``."""
        with self._generation_lock:
            self._generation += 1
            return self._generation

    def persist(self, generation: int) -> None:
        """Write a snapshot unless one written since ``generation`` was reached holds it already."""
        if self.exclusion.held_shared:
            return  # an enclosing request persists when it is done
        with self.exclusion.exclusive():
            if self._persisted >= generation:
                return
            target = self._generation
            try:
                self._write_snapshot()
            except Exception as exc:  # the request still answers; the next change tries again
                self.warn(f"could not write the snapshot, the emulator's latest changes are not kept yet ({exc!r})")
                return
            self._persisted = target

    def record(self, records: list[tuple[Any, ...]]) -> None:
        """Append item or object records (their bodies go to blobs first)."""
        try:
            payloads = [self._dumps(r)[0] for r in records]
            self.journal.append(payloads)
        except Exception as exc:  # the request still answers (the change is made); a restart would miss it
            self.warn(f"could not journal a write, a restart would lose it ({exc!r})")
            return
        self.costs.journal_records += len(payloads)

    def warn(self, message: str) -> None:
        """One line on stderr, once per distinct message."""
        if message not in self._warned:
            self._warned.add(message)
            print(f"stagecoach: state directory {self.directory}: {message}", file=sys.stderr, flush=True)

    def _dumps(self, value: Any) -> tuple[bytes, set[str]]:
        import io

        buffer = io.BytesIO()
        pickler = _Pickler(buffer, self.blobs, self._written_blobs)
        pickler.dump(value)
        return buffer.getvalue(), pickler.digests

    def _write_snapshot(self) -> None:
        import moto

        from . import cloudformation

        started = _clock()
        with cloudformation._LOCK:
            for attempt in range(3):
                try:
                    services = _services()
                    body, _ = self._dumps({"services": services, "cloudformation": cloudformation.export_state()})
                    break
                except RuntimeError:  # a dictionary changed while it was read (an in-process caller): again
                    if attempt == 2:
                        raise
        header = f"stagecoach-state {FORMAT} moto {moto.__version__}\n".encode()
        write_atomically(self.directory / SNAPSHOT, [header, body])
        self.costs.snapshots += 1
        self.costs.snapshot_seconds += _clock() - started
        self.costs.snapshot_bytes = len(header) + len(body)

    def _compact(self) -> None:
        """Rewrite the journal with the live items and objects only, and delete the blobs nobody names."""
        from .emulator import WRITE_LOCK

        with WRITE_LOCK, _OBJECT_LOCK:
            payloads: list[bytes] = []
            digests: set[str] = set()
            for record in _live_records():
                payload, named = self._dumps(record)
                payloads.append(payload)
                digests |= named
            self.journal.replace(payloads)
            self._compacted_size = self.journal.size
            for path in list(self.blobs.glob("*/*")):
                if path.name not in digests:
                    path.unlink(missing_ok=True)
                    self._written_blobs.discard(path.name)
            self.costs.compactions += 1

    # -- execution histories --

    def _execution_path(self, arn: str) -> Path | None:
        parts = arn.split(":")
        if len(parts) < 8 or parts[5] != "execution":
            return None
        region, account, machine, name = parts[3], parts[4], parts[6], ":".join(parts[7:])
        quoted = [urllib.parse.quote(p, safe="") for p in (account, region, machine)]
        return self.executions.joinpath(*quoted, urllib.parse.quote(name, safe="") + ".jsonl")

    def execution_event(self, arn: str, event: dict[str, Any]) -> None:
        """Append one history event of the execution (the first one starts the file afresh)."""
        path = self._execution_path(arn)
        if path is None:
            return
        if path.parent not in self._execution_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._execution_dirs.add(path.parent)
        line = json.dumps(event, default=str, separators=(",", ":")).encode() + b"\n"
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if event.get("id") == 1 else os.O_APPEND)
        fd = os.open(path, flags, 0o644)
        try:
            _write_all(fd, line)
        finally:
            os.close(fd)

    def execution_history(self, arn: str) -> list[dict[str, Any]] | None:
        """The events kept for an execution the emulator no longer has (None: none kept)."""
        path = self._execution_path(arn)
        if path is None or not path.exists():
            return None
        events = []
        for line in path.read_bytes().split(b"\n"):
            if not line:
                continue
            try:
                events.append(json.loads(line))
            except ValueError:  # the last line, cut short by a crash
                break
        return events


def _clock() -> float:
    import time

    return time.perf_counter()


# --- walking moto's backends ---------------------------------------------------------------------------------

_BACKEND_DICT_FIELDS = {"backend", "service_name", "_use_boto3_regions", "_additional_regions", "_id"}
_locations: dict[int, tuple[str, str] | None] = {}


def _location(backends: Any) -> tuple[str, str] | None:
    """(module, attribute) of a moto BackendDict, to find it again after a restart."""
    key = id(backends)
    if key not in _locations:
        found = None
        candidates = [sys.modules.get(backends.backend.__module__)] + [
            m for n, m in list(sys.modules.items()) if n.startswith("moto.")
        ]
        for module in candidates:
            if module is None:
                continue
            name = next((n for n, v in vars(module).items() if v is backends), None)
            if name is not None:
                found = (module.__name__, name)
                break
        _locations[key] = found
    return _locations[key]


def _services() -> list[tuple[str, str, dict[str, Any], dict[str, dict[str, Any]]]]:
    from moto.core.base_backend import BackendDict

    services = []
    instances: list[Any] = BackendDict._instances  # type: ignore[misc]
    for backends in list(instances):
        if backends.service_name in NOT_KEPT:
            continue
        location = _location(backends)
        if location is None:
            continue
        extras = {k: v for k, v in vars(backends).items() if k not in _BACKEND_DICT_FIELDS}
        accounts = {account: dict(regions.items()) for account, regions in list(backends.items())}
        services.append((*location, extras, accounts))
    return services


def _table(account_id: str, region: str, name: str) -> Any:
    from moto.dynamodb.models import dynamodb_backends

    backend: Any = dict.get(dynamodb_backends, account_id, {}).get(region)  # type: ignore[call-overload]
    return None if backend is None else backend.tables.get(name)


def _bucket(account_id: str, partition: str, name: str) -> Any:
    from moto.s3.models import s3_backends

    backend: Any = dict.get(s3_backends, account_id, {}).get(partition)  # type: ignore[call-overload]
    return None if backend is None else backend.buckets.get(name)


def _buckets() -> Iterator[Any]:
    from moto.s3.models import s3_backends

    for _account, _partition, backend in s3_backends.iter_backends():
        yield from list(backend.buckets.values())  # type: ignore[attr-defined]


def _own(bucket: Any) -> None:
    bucket.keys._stagecoach_bucket = bucket


def _item_record(table: Any, hash_key: Any, range_key: Any) -> tuple[Any, ...]:
    item = table.get_item(hash_key, range_key) if (range_key is not None or not table.has_range_key) else None
    image = item.to_json()["Attributes"] if item is not None else None
    range_json = range_key.to_json() if range_key is not None else None
    return ("item", table.account_id, table.region_name, table.name, hash_key.to_json(), range_json, image)


def _object_record(bucket: Any, key_name: str) -> tuple[Any, ...]:
    versions = dict.get(bucket.keys, key_name)
    return ("object", bucket.account_id, bucket.partition, bucket.name, key_name, list(versions) if versions else None)


def _live_count() -> int:
    """How many records a compacted journal holds (items and object keys)."""
    from moto.dynamodb.models import dynamodb_backends

    tables = [t for _a, _r, b in dynamodb_backends.iter_backends() for t in b.tables.values()]  # type: ignore[attr-defined]
    return sum(len(t) for t in tables) + sum(len(dict.keys(b.keys)) for b in _buckets())


def _live_records() -> Iterator[tuple[Any, ...]]:
    from moto.dynamodb.models import dynamodb_backends

    for _account, _region, backend in dynamodb_backends.iter_backends():
        for table in list(backend.tables.values()):  # type: ignore[attr-defined]
            for item in table.all_items():
                yield _item_record(table, item.hash_key, item.range_key)
    for bucket in _buckets():
        for key_name in list(dict.keys(bucket.keys)):
            yield _object_record(bucket, key_name)


# --- hooks in moto -------------------------------------------------------------------------------------------

_OBJECT_LOCK = threading.RLock()


@dataclass
class _Pending:
    """What the outermost write call of this thread touched, journaled when it returns."""

    depth: int = 0
    items: dict[tuple[Any, ...], tuple[Any, Any, Any]] = field(default_factory=dict)
    objects: dict[tuple[int, str], tuple[Any, str]] = field(default_factory=dict)


def _pending() -> _Pending:
    pending: _Pending | None = getattr(_local, "pending", None)
    if pending is None:
        pending = _local.pending = _Pending()
    return pending


def _touch_item(table: Any, hash_key: Any, range_key: Any) -> None:
    store = _store
    if store is None or not store.recording:
        return
    pending = _pending()
    pending.items[(id(table), hash_key, range_key)] = (table, hash_key, range_key)
    if pending.depth == 0:
        _flush(pending)


def _touch_object(bucket: Any, key_name: str) -> None:
    store = _store
    if store is None or not store.recording:
        return
    pending = _pending()
    pending.objects[(id(bucket), key_name)] = (bucket, key_name)
    if pending.depth == 0:
        _flush(pending)


def _flush(pending: _Pending) -> None:
    store = _store
    items, objects = list(pending.items.values()), list(pending.objects.values())
    pending.items, pending.objects = {}, {}
    if store is None or not store.recording or not (items or objects):
        return
    records = [_item_record(*i) for i in items] + [_object_record(*o) for o in objects]
    store.record(records)


def _writing(
    lock: Any, touched: Callable[..., None] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a backend method that writes items or objects: under ``lock``, and what it touched is journaled
    when the outermost such call returns (also when it raised: the journal then says what is there)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(original)

        @functools.wraps(original)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _store is None:
                return original(self, *args, **kwargs)
            pending = _pending()
            with lock:
                pending.depth += 1
                try:
                    if touched is not None:
                        with contextlib.suppress(Exception):  # a bad request: the call itself says why
                            touched(self, signature.bind(self, *args, **kwargs).arguments)
                    return original(self, *args, **kwargs)
                finally:
                    pending.depth -= 1
                    if pending.depth == 0:
                        _flush(pending)

        return call

    return wrap


def _update_item_touched(backend: Any, arguments: dict[str, Any]) -> None:
    table = backend.get_table(arguments["table_name"])
    hash_key, range_key = backend.get_keys_value(table, arguments["key"])
    _touch_item(table, hash_key, range_key)


def _object_touched(backend: Any, arguments: dict[str, Any]) -> None:
    key = arguments.get("key")
    bucket_name, key_name = (
        (key.bucket_name, key.name) if key is not None else (arguments["bucket_name"], arguments["key_name"])
    )
    _touch_object(backend.get_bucket(bucket_name), key_name)


def _dropping_table(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def delete_table(self: Any, name: str) -> Any:
        table = original(self, name)
        store = _store
        if store is not None and store.recording:
            store.record([("drop-table", table.account_id, table.region_name, table.name)])
        return table

    return delete_table


def _dropping_bucket(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def delete_bucket(self: Any, bucket_name: str) -> Any:
        bucket = original(self, bucket_name)
        store = _store
        if bucket is not None and store is not None and store.recording:
            store.record([("drop-bucket", bucket.account_id, bucket.partition, bucket.name)])
        return bucket

    return delete_bucket


def install() -> None:
    """Patch moto so that a recording store sees every write (idempotent; no effect without a store)."""
    global _installed
    if _installed:
        return
    from .emulator import WRITE_LOCK, harden_moto

    harden_moto()
    _install_dynamodb(WRITE_LOCK)
    _install_s3()
    _install_requests()
    _install_histories()
    _installed = True


def _install_dynamodb(lock: Any) -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    original_put: Callable[..., Any] = Table.put_item
    original_delete: Callable[..., Any] = Table.delete_item

    @functools.wraps(original_put)
    def put_item(self: Any, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        item = original_put(self, item_attrs, *args, **kwargs)
        _touch_item(self, item.hash_key, item.range_key)
        return item

    @functools.wraps(original_delete)
    def delete_item(self: Any, hash_key: Any, range_key: Any) -> Any:
        item = original_delete(self, hash_key, range_key)
        _touch_item(self, hash_key, range_key)
        return item

    Table.put_item = put_item  # type: ignore[method-assign]
    Table.delete_item = delete_item  # type: ignore[method-assign]
    for name in ("put_item", "delete_item", "transact_write_items", "execute_statement", "batch_execute_statement",
                 "execute_transaction"):  # fmt: skip
        setattr(DynamoDBBackend, name, _writing(lock)(getattr(DynamoDBBackend, name)))
    DynamoDBBackend.update_item = _writing(lock, _update_item_touched)(DynamoDBBackend.update_item)  # type: ignore[method-assign]
    DynamoDBBackend.delete_table = _dropping_table(DynamoDBBackend.delete_table)  # type: ignore[method-assign]


def _install_s3() -> None:
    from moto.s3.models import FakeBucket, S3Backend
    from moto.s3.utils import _VersionedKeyStore

    original_init: Callable[..., Any] = FakeBucket.__init__

    @functools.wraps(original_init)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        _own(self)

    FakeBucket.__init__ = init  # type: ignore[method-assign]

    def touching(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def call(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
            result = original(self, key, *args, **kwargs)
            bucket = self.__dict__.get("_stagecoach_bucket")
            if bucket is not None:
                _touch_object(bucket, key)
            return result

        return call

    for name in ("__setitem__", "setlist", "pop", "__delitem__"):
        setattr(_VersionedKeyStore, name, touching(getattr(_VersionedKeyStore, name)))
    for name in ("put_object", "copy_object", "complete_multipart_upload", "delete_object", "delete_objects",
                 "restore_object"):  # fmt: skip
        if hasattr(S3Backend, name):
            setattr(S3Backend, name, _writing(_OBJECT_LOCK)(getattr(S3Backend, name)))
    for name in ("put_object_acl", "put_object_legal_hold", "put_object_retention", "put_object_tagging",
                 "delete_object_tagging"):  # fmt: skip
        if hasattr(S3Backend, name):
            setattr(S3Backend, name, _writing(_OBJECT_LOCK, _object_touched)(getattr(S3Backend, name)))
    S3Backend.delete_bucket = _dropping_bucket(S3Backend.delete_bucket)  # type: ignore[method-assign]


def structural(service: str | None, action: str | None) -> bool:
    """Whether a request may change what the snapshot holds (not: reads, journaled writes, messages, executions)."""
    if not service or service in NOT_KEPT or not action:
        return False
    if action.startswith(_READ_PREFIXES):
        return False
    return action not in _NOT_STRUCTURAL.get(service, ())


def _install_requests() -> None:
    from moto.core.responses import BaseResponse
    from moto.s3.responses import S3Response

    from . import cloudformation

    original_call: Callable[..., Any] = BaseResponse.call_action

    @functools.wraps(original_call)
    def call_action(self: Any) -> Any:
        store = _store
        if store is None or not store.recording:
            return original_call(self)
        service = self.service_name
        try:
            action = self._get_action()
        except Exception:
            action = None
        cfn_read = service == "cloudformation" and not structural(service, action)
        if not (cfn_read or structural(service, action)):
            return original_call(self)
        with store.exclusion.shared():
            before = cloudformation.fingerprint() if cfn_read else None
            response = original_call(self)
            generation = store.changed() if not cfn_read or cloudformation.fingerprint() != before else None
        if generation is not None:
            store.persist(generation)
        return response

    BaseResponse.call_action = call_action  # type: ignore[method-assign]

    original_bucket: Callable[..., Any] = S3Response.bucket_response

    @functools.wraps(original_bucket)
    def bucket_response(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        store = _store
        if store is None or not store.recording or request.method in ("GET", "HEAD", "OPTIONS"):
            return original_bucket(self, request, full_url, headers)
        with store.exclusion.shared():
            response = original_bucket(self, request, full_url, headers)
            generation = store.changed()
        store.persist(generation)
        return response

    S3Response.bucket_response = bucket_response  # type: ignore[method-assign]


def _install_histories() -> None:
    from moto.stepfunctions.exceptions import ExecutionDoesNotExist
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original_environment: Callable[..., Any] = ExecutionWorker._get_evaluation_environment

    @functools.wraps(original_environment)
    def environment(self: Any) -> Any:
        env = original_environment(self)
        env.event_manager._stagecoach_execution = self._evaluation_details.execution_details.arn
        return env

    ExecutionWorker._get_evaluation_environment = environment  # type: ignore[method-assign]

    original_publish: Callable[..., Any] = EventManager._publish_history_event

    @functools.wraps(original_publish)
    def publish(self: Any, *args: Any, **kwargs: Any) -> None:
        original_publish(self, *args, **kwargs)
        store = _store
        arn = getattr(self, "_stagecoach_execution", None)
        if store is not None and store.recording and arn:
            try:
                store.execution_event(arn, self._history_event_list[-1])
            except OSError as exc:  # the execution goes on; its kept history misses this event
                store.warn(f"could not keep the history of an execution ({exc!r})")

    EventManager._publish_history_event = publish  # type: ignore[method-assign]

    original_history: Callable[..., Any] = StepFunctionsParserBackend.get_execution_history

    @functools.wraps(original_history)
    def get_execution_history(self: Any, execution_arn: str) -> Any:
        try:
            return original_history(self, execution_arn)
        except ExecutionDoesNotExist:
            store = _store
            events = store.execution_history(execution_arn) if store is not None else None
            if events is None:
                raise
            return {"events": events}

    StepFunctionsParserBackend.get_execution_history = get_execution_history  # type: ignore[method-assign]
