"""CRI log format: parse/format, partial lines, tail/since/timestamps/limit, follow, instance files."""

from __future__ import annotations

import asyncio
import io
import os

from pocketkube.kubelet.runtime.logs import (
    LogOptions,
    follow_log,
    format_line,
    format_timestamp,
    instance_log_path,
    join_partials,
    parse_line,
    parse_timestamp,
    previous_log_path,
    read_log,
    write_output,
)

T0 = parse_timestamp("2026-11-25T17:12:41.803159824+00:00")
CONMON_LINES = (
    b"2026-11-25T17:12:41.803159824+00:00 stdout F line 0\n"
    b"2026-11-25T17:12:41.803200000+00:00 stderr F oops\n"
    b"2026-11-25T17:12:42.000000000+00:00 stdout P par\n"
    b"2026-11-25T17:12:42.100000000+00:00 stdout F tial\n"
    b"2026-11-25T17:12:43.000000001+00:00 stdout F \n"
    b"2026-11-25T17:12:44.5+00:00 stdout P no newline"
)


def write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def append(path: str, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_timestamps() -> None:
    assert T0 == 1795626761803159824
    assert parse_timestamp("2026-11-25T17:12:41.803159824Z") == T0
    assert parse_timestamp("2026-11-25T18:12:41.803159824+01:00") == T0
    assert parse_timestamp("2026-11-25T17:12:41Z") == 1795626761 * 10**9
    assert format_timestamp(T0) == "2026-11-25T17:12:41.803159824Z"
    assert format_timestamp(1795626761 * 10**9 + 500_000_000) == "2026-11-25T17:12:41.5Z"
    assert format_timestamp(1795626761 * 10**9) == "2026-11-25T17:12:41Z"
    assert format_timestamp(T0, utc_z=False) == "2026-11-25T17:12:41.803159824+00:00"


def test_parse_and_format_round_trip() -> None:
    line = parse_line(b"2026-11-25T17:12:41.803159824+00:00 stdout F line 0\n")
    assert line is not None and (line.timestamp_ns, line.stream, line.partial, line.content) == (T0, "stdout", False, b"line 0")
    assert format_line("stdout", b"line 0", timestamp_ns=T0) == b"2026-11-25T17:12:41.803159824+00:00 stdout F line 0\n"
    empty = parse_line(b"2026-11-25T17:12:41.803159824+00:00 stderr F")
    assert empty is not None and empty.content == b""
    assert parse_line(b"garbage") is None
    assert parse_line(b"notatime stdout F x") is None
    assert parse_line(b"2026-11-25T17:12:41Z other F x") is None


def test_write_output_splits_lines_and_marks_partial() -> None:
    buf = io.BytesIO()
    write_output(buf, "stderr", b"a\nb\nc", timestamp_ns=T0)
    assert buf.getvalue().split(b"\n")[:3] == [
        b"2026-11-25T17:12:41.803159824+00:00 stderr F a",
        b"2026-11-25T17:12:41.803159824+00:00 stderr F b",
        b"2026-11-25T17:12:41.803159824+00:00 stderr P c",
    ]


def test_join_partials_per_stream() -> None:
    lines = [parse_line(raw) for raw in CONMON_LINES.split(b"\n")]
    joined = join_partials(line for line in lines if line is not None)
    assert [line.content for line in joined] == [b"line 0", b"oops", b"partial", b"", b"no newline"]
    assert joined[2].timestamp_ns == parse_timestamp("2026-11-25T17:12:42Z")
    assert joined[-1].partial


def test_read_log_options(tmp_path: os.PathLike[str]) -> None:
    path = write(os.path.join(tmp_path, "0.log"), CONMON_LINES)
    assert read_log(path) == b"line 0\noops\npartial\n\nno newline"
    assert read_log(path, LogOptions(tail=2)) == b"\nno newline"
    assert read_log(path, LogOptions(tail=0)) == b""
    assert read_log(path, LogOptions(streams=("stderr",))) == b"oops\n"
    assert read_log(path, LogOptions(since_ns=parse_timestamp("2026-11-25T17:12:42Z"))) == b"partial\n\nno newline"
    assert read_log(path, LogOptions(limit_bytes=9)) == b"line 0\noo"
    assert read_log(path, LogOptions(timestamps=True, tail=3)).split(b"\n")[:2] == [
        b"2026-11-25T17:12:42Z partial", b"2026-11-25T17:12:43.000000001Z "]


async def test_follow_streams_new_lines_until_finished(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "0.log")
    finished = asyncio.Event()
    got: list[bytes] = []

    async def consume() -> None:
        async for chunk in follow_log(path, LogOptions(tail=1), finished=finished.is_set, poll_interval=0.01):
            got.append(chunk)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.03)  # the file does not exist yet
    write(path, b"2026-11-25T17:12:41Z stdout F old\n2026-11-25T17:12:42Z stdout F recent\n")
    await asyncio.sleep(0.05)
    append(path, b"2026-11-25T17:12:43Z stdout P hal\n2026-11-25T17:12:43Z stdout F f")  # caught mid-write
    await asyncio.sleep(0.05)
    append(path, b"\n2026-11-25T17:12:43Z stderr F done\n2026-11-25T17:12:44Z stdout P end")
    finished.set()
    await asyncio.wait_for(task, 2)
    assert b"".join(got) == b"recent\nhalf\ndone\nend"


def test_instance_files(tmp_path: os.PathLike[str]) -> None:
    base = str(tmp_path)
    assert instance_log_path(base, "web", 3) == os.path.join(base, "web", "3.log")
    os.makedirs(os.path.join(base, "web"))
    write(instance_log_path(base, "web", 1), b"")
    write(instance_log_path(base, "web", 3), b"")
    assert previous_log_path(base, "web", 3) == instance_log_path(base, "web", 1)
    assert previous_log_path(base, "web", 1) is None


def test_tail_reads_backwards_exactly(tmp_path: os.PathLike[str]) -> None:
    buf = io.BytesIO()
    for i in range(3000):
        stream = "stderr" if i % 7 == 0 else "stdout"
        write_output(buf, stream, b"x" * (i % 13), timestamp_ns=T0 + i)
        write_output(buf, stream, b"%d\n" % i, timestamp_ns=T0 + i)  # each line is a P then an F record
    path = write(os.path.join(tmp_path, "big.log"), buf.getvalue())
    for streams in (("stdout", "stderr"), ("stderr",)):
        everything = read_log(path, LogOptions(streams=streams, timestamps=True)).splitlines(True)
        for tail in (0, 1, 5, 100, 2999, 3000, 5000):
            opts = LogOptions(tail=tail, streams=streams, timestamps=True)
            assert read_log(path, opts) == b"".join(everything[max(0, len(everything) - tail):] if tail else [])
