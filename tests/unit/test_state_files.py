"""The state directory's files: framed journal records, atomic replacement, the request classification."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from chalicelib.local.state import Journal, SharedExclusiveLock, frame, structural, unframe, write_atomically

RECORDS = [b"first record", b"", b"x" * 1000, b"last"]


def test_every_cut_of_the_journal_keeps_exactly_the_whole_records_before_it() -> None:
    data = b"".join(frame(r) for r in RECORDS)
    ends = [sum(len(frame(r)) for r in RECORDS[: i + 1]) for i in range(len(RECORDS))]
    for cut in range(len(data) + 1):
        records, intact = unframe(data[:cut])
        whole = [e for e in ends if e <= cut]
        assert records == RECORDS[: len(whole)], cut
        assert intact == (whole[-1] if whole else 0), cut


def test_a_corrupt_record_ends_the_journal_there() -> None:
    data = bytearray(b"".join(frame(r) for r in RECORDS))
    second = len(frame(RECORDS[0])) + len(frame(RECORDS[1]))
    data[second + 20] ^= 0xFF  # inside the third record's payload
    records, intact = unframe(bytes(data))
    assert records == RECORDS[:2] and intact == second


def test_journal_drops_a_torn_tail_and_appends_after_the_last_whole_record(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    whole = frame(b"one") + frame(b"two")
    path.write_bytes(whole + frame(b"three")[:-2])  # a kill -9 in the middle of the third
    journal = Journal(path)
    assert journal.read() == [b"one", b"two"]
    assert path.read_bytes() == whole
    journal.open()
    journal.append([b"four", b"five"])
    journal.close()
    assert Journal(path).read() == [b"one", b"two", b"four", b"five"]


def test_journal_replace_rewrites_it_and_appends_after(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.log")
    journal.open()
    journal.append([b"a", b"b", b"c"])
    journal.replace([b"c"])
    journal.append([b"d"])
    assert journal.size == len(frame(b"c")) + len(frame(b"d"))
    journal.close()
    assert Journal(tmp_path / "journal.log").read() == [b"c", b"d"]
    assert not (tmp_path / "journal.log.tmp").exists()


def test_an_interrupted_atomic_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "emulator.pickle"
    write_atomically(path, [b"old ", b"state"])

    def chunks() -> object:
        yield b"half of the new"
        raise KeyboardInterrupt  # the process stops in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, chunks())  # type: ignore[arg-type]
    assert path.read_bytes() == b"old state"
    write_atomically(path, [b"new state"])
    assert path.read_bytes() == b"new state"


@pytest.mark.parametrize(
    ("service", "action", "expected"),
    [
        ("cloudformation", "CreateChangeSet", True),
        ("secretsmanager", "PutSecretValue", True),
        ("dynamodb", "CreateTable", True),
        ("sqs", "CreateQueue", True),
        ("ssm", "PutParameter", True),
        ("dynamodb", "TransactWriteItems", False),  # journaled item by item
        ("dynamodb", "Query", False),
        ("sqs", "SendMessage", False),  # messages are not kept
        ("sqs", "ReceiveMessage", False),
        ("stepfunctions", "StartExecution", False),  # executions are resumed, not restored
        ("secretsmanager", "GetSecretValue", False),
        ("cloudformation", "DescribeStacks", False),
        ("awslambda", "Invoke", False),
        (None, "CreateThing", False),
    ],
)
def test_which_requests_change_the_snapshot(service: str | None, action: str, expected: bool) -> None:
    assert structural(service, action) is expected


def test_exclusive_side_waits_for_shared_holders_and_a_thread_takes_the_shared_side_again() -> None:
    lock = SharedExclusiveLock()
    order: list[str] = []
    trying = threading.Event()

    def snapshot() -> None:
        trying.set()
        with lock.exclusive():
            order.append("exclusive")

    thread = threading.Thread(target=snapshot)
    with lock.shared():
        thread.start()
        assert trying.wait(5)
        with lock.shared():  # taken again by this thread although a writer waits: no deadlock
            assert lock.held_shared
        thread.join(timeout=0.2)
        assert thread.is_alive() and order == []  # the writer waits for the shared holder
        order.append("shared released")
    thread.join(timeout=5)
    assert order == ["shared released", "exclusive"]
    assert not lock.held_shared
