"""The write-ahead log on its own: replay, torn tails, damaged records, group commit."""

from __future__ import annotations

import threading

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
    records, _ = wal.read_log(path)
    end = sum(wal.RECORD_HEADER.size + len(p) for _s, p in records)
    raw = bytearray(path.read_bytes())
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
