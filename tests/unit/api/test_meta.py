"""uid and timestamp helpers: random version-4 uids from a pooled source, once-a-second RFC 3339."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime

from pocketkube.api import meta

_UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_new_uid_is_a_random_version_4_uuid() -> None:
    uids = [meta.new_uid() for _ in range(5000)]  # crosses many refills of the random pool
    assert len(set(uids)) == len(uids)
    for u in uids[:600]:
        assert _UID.match(u), u
        parsed = uuid.UUID(u)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == u


def test_forked_child_never_repeats_the_parents_uids() -> None:
    meta.new_uid()  # the pool now holds bytes the parent will hand out next
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child writes its next uids and leaves at once
        os.close(read)
        os.write(write, ",".join(meta.new_uid() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 4096).decode().split(",")
    os.close(read)
    os.waitpid(pid, 0)
    parent = [meta.new_uid() for _ in range(10)]
    assert len(child) == 10 and not set(child) & set(parent)


def test_now_rfc3339_is_the_current_second() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    text = meta.now_rfc3339()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    stamped = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= stamped <= after
    later = datetime.strptime(meta.now_rfc3339(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert stamped <= later <= datetime.now(UTC)
