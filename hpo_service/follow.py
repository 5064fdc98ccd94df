"""Read what was appended to a growing file since the last look (results log, process logs)."""

from __future__ import annotations

from pathlib import Path


class AppendedLines:
    """Complete lines appended to ``path`` since the previous :meth:`read`; a last line without its newline
    yet (a writer in the middle of it) waits for the next read. A missing file has no lines; a file that
    shrank (replaced, truncated) is read again from its start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[str]:
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, 2)
                if size < self.offset:
                    self.offset, self.partial = 0, b""
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in lines]
