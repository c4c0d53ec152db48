"""One process per data directory: a second one (a real process) refuses with a clear message."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from storage_service.columnstore.errors import DataDirLockedError
from storage_service.columnstore.store import ColumnStore
from tests.conftest import REPO_ROOT


def _open_in_another_process(data_dir) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(
        f"""
        from storage_service.columnstore.errors import DataDirLockedError
        from storage_service.columnstore.store import ColumnStore
        try:
            ColumnStore.open({str(data_dir)!r}).close()
        except DataDirLockedError as e:
            print("LOCKED:", e)
            raise SystemExit(3)
        print("OPENED")
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )


def test_a_second_process_cannot_open_a_data_dir_in_use(tmp_path):
    data_dir = tmp_path / "s"
    store = ColumnStore.open(data_dir)
    segments_before = sorted(p.name for p in (data_dir / "wal").iterdir())

    other = _open_in_another_process(data_dir)

    assert other.returncode == 3, other.stdout + other.stderr
    assert str(data_dir) in other.stdout and "another process" in other.stdout
    assert sorted(p.name for p in (data_dir / "wal").iterdir()) == segments_before
    store.close()
    # Released on close: now the other process may open it.
    assert _open_in_another_process(data_dir).stdout.strip() == "OPENED"


def test_the_same_process_cannot_open_it_twice_either(tmp_path):
    store = ColumnStore.open(tmp_path / "s")
    with pytest.raises(DataDirLockedError, match="stop that process"):
        ColumnStore.open(tmp_path / "s")
    store.close()
    ColumnStore.open(tmp_path / "s").close()
