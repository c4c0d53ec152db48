"""The write-ahead log on its own: replay, torn tails, damaged records, group commit."""

from __future__ import annotations

import threading

import pytest

from storage_service.columnstore import wal


def _write(tmp_path, payloads: list[bytes]) -> wal.WriteAheadLog:
    log = wal.WriteAheadLog(tmp_path, 7)
    for seq, payload in enumerate(payloads, start=1):
        log.sync(log.append(seq, [payload]))
    return log


def test_log_replays_every_record_in_order(tmp_path):
    payloads = [f"record {i}".encode() * (i + 1) for i in range(20)]
    _write(tmp_path, payloads).close()

    records, damage = wal.read_log(tmp_path / "000007.log")

    assert [p for _seq, p in records] == payloads
    assert [s for s, _p in records] == list(range(1, 21))
    assert damage == []


def test_torn_tail_is_dropped_and_reported(tmp_path):
    _write(tmp_path, [b"one", b"two", b"three" * 100]).close()
    path = tmp_path / "000007.log"
    raw = bytearray(path.read_bytes())
    end = raw.find(b"three" * 100) + 500
    raw[end - 50 : end] = bytes(50)  # the crash left the last record's end unwritten
    path.write_bytes(bytes(raw))

    records, damage = wal.read_log(path)

    assert [p for _s, p in records] == [b"one", b"two"]
    assert len(damage) == 1 and "tail" in damage[0].reason


def test_flipped_byte_in_a_middle_record_drops_only_that_record(tmp_path):
    _write(tmp_path, [b"first" * 10, b"second" * 10, b"third" * 10]).close()
    path = tmp_path / "000007.log"
    raw = bytearray(path.read_bytes())
    second_payload = raw.find(b"second")
    raw[second_payload + 3] ^= 0x20
    path.write_bytes(bytes(raw))

    records, damage = wal.read_log(path)

    assert [p for _s, p in records] == [b"first" * 10, b"third" * 10]
    assert len(damage) == 1 and damage[0].reason == "corrupt record skipped"


@pytest.mark.parametrize("where", ["length", "crc", "type", "payload"])
def test_damage_in_a_big_record_costs_that_record_and_the_log_resynchronises(tmp_path, where):
    # Records spanning several 32 KiB blocks: a damaged fragment header or payload drops the
    # record it belongs to; every later record is read again from the next block on.
    payloads = [bytes([i]) * 50_000 for i in range(1, 9)]
    _write(tmp_path, payloads).close()
    path = tmp_path / "000007.log"
    raw = bytearray(path.read_bytes())
    third = raw.find(bytes([3]) * 1000) - wal.FRAGMENT_HEADER.size - 8  # its first fragment
    field = {"crc": 0, "length": 4, "type": 6, "payload": 400}[where]
    raw[third + field] ^= 0x10
    path.write_bytes(bytes(raw))

    records, damage = wal.read_log(path)

    assert [p for _s, p in records] == payloads[:2] + payloads[3:]
    assert [s for s, _p in records] == [1, 2, 4, 5, 6, 7, 8]
    assert len(damage) == 1 and not damage[0].is_tail


def test_zeroed_block_in_the_middle_is_damage_not_the_end(tmp_path):
    payloads = [bytes([i]) * 20_000 for i in range(1, 9)]
    _write(tmp_path, payloads).close()
    path = tmp_path / "000007.log"
    raw = bytearray(path.read_bytes())
    raw[wal.BLOCK_SIZE : 2 * wal.BLOCK_SIZE] = bytes(wal.BLOCK_SIZE)
    path.write_bytes(bytes(raw))

    records, damage = wal.read_log(path)

    assert [s for s, _p in records][-1] == 8
    assert 0 < len(records) < 8
    assert len(damage) == 1 and not damage[0].is_tail


def test_format_1_logs_written_before_are_still_read(tmp_path):
    path = tmp_path / "000005.log"
    path.write_bytes(
        b"".join(wal.encode_v1_record(s, 5, f"old {s}".encode()) for s in (1, 2, 3)) + bytes(4096)
    )
    records, damage = wal.read_log(path)
    assert records == [(1, b"old 1"), (2, b"old 2"), (3, b"old 3")] and damage == []


def test_preallocated_space_after_the_last_record_is_not_damage(tmp_path):
    _write(tmp_path, [b"only"]).close()

    records, damage = wal.read_log(tmp_path / "000007.log")

    assert (tmp_path / "000007.log").stat().st_size == wal.PREALLOCATE_BYTES
    assert records == [(1, b"only")]
    assert damage == []


def test_one_fsync_covers_every_record_written_before_it(tmp_path):
    log = wal.WriteAheadLog(tmp_path, 1)
    positions = [log.append(seq, [b"x" * 100]) for seq in range(1, 6)]

    log.sync(positions[-1])
    for position in positions:
        log.sync(position)

    assert log.fsyncs == 1
    log.close()


def test_concurrent_writers_share_fsyncs(tmp_path):
    log = wal.WriteAheadLog(tmp_path, 1)
    start = threading.Barrier(16)

    def writer(k: int) -> None:
        start.wait()
        for i in range(50):
            log.sync(log.append(k * 1000 + i, [b"y" * 2000]))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    records, _damage = wal.read_log(tmp_path / "000001.log")

    assert len(records) == 800
    assert log.fsyncs < 800


def test_rotation_makes_the_old_file_durable_and_starts_the_next(tmp_path):
    log = wal.WriteAheadLog(tmp_path, 3)
    position = log.append(1, [b"before"])

    new_number = log.rotate()
    log.sync(position)
    log.sync(log.append(2, [b"after"]))
    log.close()

    assert new_number == 4
    assert wal.log_numbers(tmp_path) == [3, 4]
    assert wal.read_log(tmp_path / "000004.log")[0] == [(2, b"after")]
