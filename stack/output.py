"""What `python -m stack` prints: short prefixed lines for a person at a terminal, JSON lines
(one object each, tagged with the service) when the output goes to a file or another program.

IMAGEREPO_LOG_FORMAT=text|json overrides the choice.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

# Fields of a service's JSON log line that the short form shows elsewhere or leaves out.
_SHOWN_APART = {"time", "level", "message", "service", "name", "taskName", "exc_info"}
_COLOURS = {"storage": 36, "vision": 35, "search": 33, "gateway": 32, "stack": 1}
_LEVEL_COLOURS = {"WARNING": 33, "ERROR": 31, "CRITICAL": 31}
MAX_EXTRA_CHARS = 120


class Output:
    def __init__(self, stream: IO[str] | None = None, fmt: str = "") -> None:
        self._stream = stream or sys.stdout
        if fmt not in ("text", "json"):
            fmt = "text" if self._stream.isatty() else "json"
        self.json = fmt == "json"
        self._colour = not self.json and self._stream.isatty()
        self._lock = threading.Lock()

    def _write(self, line: str) -> None:
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def event(self, message: str, level: str = "INFO", **fields: Any) -> None:
        """A line from the supervisor itself."""
        if self.json:
            record = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "level": level,
                "service": "stack",
                "message": message,
                **fields,
            }
            self._write(json.dumps(record))
        else:
            # Values the message already shows (the banner's URL) are not repeated.
            extras = " ".join(f"{k}={v}" for k, v in fields.items() if str(v) not in message)
            self._write(self._short("stack", time.strftime("%H:%M:%S"), level, message, extras))

    def child_line(self, service: str, raw: str) -> None:
        """A line a service wrote (its JSON log lines, or anything else such as a traceback)."""
        raw = raw.rstrip("\n")
        if not raw.strip():
            return
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if self.json:
                self._write(json.dumps({"service": service, "level": "INFO", "message": raw}))
            else:
                self._write(self._prefix(service) + raw)
            return
        if self.json:
            record.setdefault("service", service)
            self._write(json.dumps(record))
            return
        clock = str(record.get("time", ""))[11:19] or time.strftime("%H:%M:%S")
        extras = " ".join(
            f"{k}={v}" for k, v in record.items() if k not in _SHOWN_APART and v not in ("", None)
        )
        if len(extras) > MAX_EXTRA_CHARS:
            extras = extras[: MAX_EXTRA_CHARS - 1] + "…"
        line = self._short(
            service, clock, str(record.get("level", "INFO")), str(record.get("message", "")), extras
        )
        self._write(line)
        if record.get("exc_info"):
            for tb_line in str(record["exc_info"]).splitlines():
                self._write(self._prefix(service) + tb_line)

    def _prefix(self, service: str) -> str:
        name = f"{service:<8}|"
        if self._colour:
            name = f"\x1b[{_COLOURS.get(service, 0)}m{name}\x1b[0m"
        return name + " "

    def _short(self, service: str, clock: str, level: str, message: str, extras: str) -> str:
        level_text = f"{level:<7}"
        if self._colour and level in _LEVEL_COLOURS:
            level_text = f"\x1b[{_LEVEL_COLOURS[level]}m{level_text}\x1b[0m"
        tail = f" {extras}" if extras else ""
        return f"{self._prefix(service)}{clock} {level_text} {message}{tail}"
