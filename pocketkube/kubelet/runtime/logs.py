"""CRI container logs (conmon's k8s-file): parse, write, and read for `kubectl logs`.

A line is `<RFC3339Nano> <stdout|stderr> <F|P> <content>`, e.g.
`2026-11-25T17:12:41.803159824+00:00 stdout F hello`; `P` marks a fragment (output with no
newline yet) that the next line of the same stream continues. The kubelet keeps one file per
container instance, `<log_dir>/<container>/<restartCount>.log`, so `--previous` reads the one
before. Follow polls the file (no inotify): the caller says when the container has exited.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

STDOUT = "stdout"
STDERR = "stderr"
FULL = "F"
PARTIAL = "P"


@dataclass(frozen=True)
class LogLine:
    """One parsed record; `timestamp_ns` is nanoseconds since the epoch (UTC)."""

    timestamp_ns: int
    stream: str
    partial: bool
    content: bytes


def parse_timestamp(text: str) -> int:
    """RFC3339 with up to nanosecond fraction and a `Z` or `+hh:mm` offset -> epoch nanoseconds."""
    date_part, frac, zone = text, "", ""
    for sep in ("Z", "+", "-"):
        idx = text.rfind(sep)
        if idx > 10:
            date_part, zone = text[:idx], text[idx:]
            break
    if "." in date_part:
        date_part, frac = date_part.split(".", 1)
    base = datetime.fromisoformat(date_part + (zone if zone not in ("", "Z") else "+00:00"))
    nanos = int((frac + "000000000")[:9]) if frac else 0
    return int(base.timestamp()) * 1_000_000_000 + nanos


def format_timestamp(timestamp_ns: int, *, utc_z: bool = True) -> str:
    """RFC3339Nano as Go prints it: trailing zeros of the fraction dropped, `Z` for UTC.

    `utc_z=False` gives conmon's fixed nine digits and `+00:00` (the on-disk form).
    """
    seconds, nanos = divmod(timestamp_ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if not utc_z:
        return f"{base}.{nanos:09d}+00:00"
    frac = f"{nanos:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def parse_line(raw: bytes) -> LogLine | None:
    """One file line (with or without its newline); None if it is not a CRI log line."""
    raw = raw.rstrip(b"\n")
    parts = raw.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"F", b"P"):
        return None
    try:
        ts = parse_timestamp(parts[0].decode())
    except ValueError:
        return None
    return LogLine(ts, parts[1].decode(), parts[2] == b"P", parts[3] if len(parts) > 3 else b"")


def format_line(stream: str, content: bytes, *, timestamp_ns: int, partial: bool = False) -> bytes:
    """One file line in conmon's form."""
    tag = PARTIAL if partial else FULL
    return b"%s %s %s %s\n" % (format_timestamp(timestamp_ns, utc_z=False).encode(), stream.encode(),
                              tag.encode(), content)


def write_output(f: IO[bytes], stream: str, data: bytes, *, timestamp_ns: int | None = None) -> None:
    """Append `data` as CRI lines to a binary file: one F line per newline, a P line for the rest."""
    ts = timestamp_ns if timestamp_ns is not None else time.time_ns()
    pieces = data.split(b"\n")
    for piece in pieces[:-1]:
        f.write(format_line(stream, piece, timestamp_ns=ts))
    if pieces[-1]:
        f.write(format_line(stream, pieces[-1], timestamp_ns=ts, partial=True))


def join_partials(lines: Iterable[LogLine]) -> list[LogLine]:
    """Merge P fragments into the F line that completes them (per stream); keeps the first timestamp.
    A fragment never completed (the container is still writing, or died mid-line) comes last."""
    joiner = _Joiner()
    return joiner.feed(lines) + joiner.flush()


def render(line: LogLine, *, timestamps: bool = False) -> bytes:
    """What `kubectl logs` prints for one line (a trailing fragment keeps no newline)."""
    text = line.content if line.partial else line.content + b"\n"
    return (format_timestamp(line.timestamp_ns).encode() + b" " + text) if timestamps else text


@dataclass(frozen=True)
class LogOptions:
    """kubectl logs options: tail -1 means all; since_ns keeps lines at or after it."""

    tail: int = -1
    since_ns: int | None = None
    timestamps: bool = False
    limit_bytes: int | None = None
    streams: tuple[str, ...] = (STDOUT, STDERR)


def _selected(lines: Iterable[LogLine], opts: LogOptions) -> Iterator[LogLine]:
    for line in lines:
        if line.stream in opts.streams and (opts.since_ns is None or line.timestamp_ns >= opts.since_ns):
            yield line


def _file_lines(path: str) -> Iterator[LogLine]:
    with open(path, "rb") as f:
        for raw in f:
            parsed = parse_line(raw)
            if parsed is not None:
                yield parsed


def _tail_records(path: str, n: int, streams: tuple[str, ...], block: int = 65536) -> list[LogLine]:
    """The end of the file, read backwards, long enough to hold the last `n` lines whole.

    Enough means n+1 full (F) records of every selected stream, or the start of the file: the
    extra F bounds the P fragments of the oldest line kept, so joining inside the region is exact.
    """
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        start = end
        data = b""
        while True:
            start = max(0, start - block)
            f.seek(start)
            data = f.read(end - start)
            raws = data.split(b"\n")
            if start > 0:
                raws = raws[1:]  # probably cut in the middle
            records = [line for raw in raws if (line := parse_line(raw)) is not None]
            full = {stream: 0 for stream in streams}
            for line in records:
                if not line.partial and line.stream in full:
                    full[line.stream] += 1
            if start == 0 or all(count > n for count in full.values()):
                return records
            block *= 2


def read_log(path: str, opts: LogOptions = LogOptions()) -> bytes:
    """The whole answer of a non-follow `kubectl logs` for one file (tail reads only the end)."""
    records = _tail_records(path, opts.tail, opts.streams) if opts.tail >= 0 else _file_lines(path)
    lines: Iterable[LogLine] = _selected(join_partials(records), opts)
    if opts.tail >= 0:
        lines = deque(lines, maxlen=opts.tail) if opts.tail else []
    out = b"".join(render(line, timestamps=opts.timestamps) for line in lines)
    return out[: opts.limit_bytes] if opts.limit_bytes is not None else out


async def follow_log(path: str, opts: LogOptions = LogOptions(), *, finished: Callable[[], bool],
                     poll_interval: float = 0.2) -> AsyncIterator[bytes]:
    """`kubectl logs -f`: the selected tail, then new lines as they are written, until `finished()`
    is true and the file is drained. Waits for the file to appear. Respects cancellation."""
    while not _exists(path):
        if finished():
            return
        await asyncio.sleep(poll_interval)
    sent = 0
    offset = 0
    pending = b""
    parser = _Joiner()
    first = True
    while True:
        done = finished()  # checked before reading, so nothing written before the exit is missed
        offset, chunk = _read_from(path, offset)
        data = pending + chunk
        raws = data.split(b"\n")
        pending = raws.pop()
        lines = [line for raw in raws if (line := parse_line(raw)) is not None]
        if done:  # the last record may lack its newline only because the writer is gone
            tail_line = parse_line(pending) if pending else None
            lines += [tail_line] if tail_line else []
        selected = list(_selected(parser.feed(lines) + (parser.flush() if done else []), opts))
        if first:
            first = False
            if opts.tail >= 0:
                selected = selected[-opts.tail:] if opts.tail else []
        for line in selected:
            out = render(line, timestamps=opts.timestamps)
            if opts.limit_bytes is not None:
                out = out[: max(0, opts.limit_bytes - sent)]
                if not out:
                    return
            sent += len(out)
            yield out
        if done:
            return
        await asyncio.sleep(poll_interval)


class _Joiner:
    """Incremental join_partials for follow."""

    def __init__(self) -> None:
        self.pending: dict[str, LogLine] = {}

    def feed(self, lines: Iterable[LogLine]) -> list[LogLine]:
        out = []
        for line in lines:
            head = self.pending.pop(line.stream, None)
            if head is not None:
                line = LogLine(head.timestamp_ns, line.stream, line.partial, head.content + line.content)
            if line.partial:
                self.pending[line.stream] = line
            else:
                out.append(line)
        return out

    def flush(self) -> list[LogLine]:
        out = sorted(self.pending.values(), key=lambda item: item.timestamp_ns)
        self.pending = {}
        return out


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _read_from(path: str, offset: int) -> tuple[int, bytes]:
    """(new offset, bytes since `offset`); a file truncated under us is read again from the start."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = offset if offset <= size else 0
        f.seek(start)
        data = f.read()
        return start + len(data), data


def instance_log_path(log_dir: str, container_name: str, restart_count: int) -> str:
    """`<log_dir>/<container>/<N>.log`: one file per container instance, as the kubelet rotates them."""
    return os.path.join(log_dir, container_name, f"{restart_count}.log")


def previous_log_path(log_dir: str, container_name: str, restart_count: int) -> str | None:
    """The newest instance file before `restart_count` that exists (`kubectl logs --previous`)."""
    for n in range(restart_count - 1, -1, -1):
        path = instance_log_path(log_dir, container_name, n)
        if os.path.exists(path):
            return path
    return None
