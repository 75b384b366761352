"""The final read of a waited job, in the events reader's own round trip.

``wait_for_job`` reads a job once BullMQ's events stream says it finished: ``get_job``'s
read, one round trip after the event reached the reader. Instead, the reader sends a
read-only script right behind its blocking ``XREAD`` (one write, the same connection):
Redis runs a command queued behind a blocked one as soon as that one is answered, so
the script reads the state of the world just after the events the XREAD returns, and
its reply arrives with theirs.

The script looks at the entries that follow the reader's cursor (at most :data:`SCAN`)
and, for each watched job (at most :data:`WATCHED` ids) with a ``completed`` or
``failed`` entry among them, answers what ``get_job`` would read then: the state as
BullMQ's ``getStateV2`` finds a finished job (the completed set first, then the failed
one) and the job's hash. A job in neither set (retried, removed) is not answered, and
its waiter reads it itself, as it does on an old Redis (no exclusive stream ranges), a
cluster (the job keys may not be named), or when the script fails.

The script writes nothing: the keys and semantics BullMQ shares with Node stay BullMQ's.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from redis.exceptions import NoScriptError

from queuekit.jobs import JobInfo
from queuekit.records import RawJob
from queuekit.redis.jobs import raw_from_hash

log = logging.getLogger("queuekit.redis.final_reads")

#: Stream entries after the cursor the script looks at (a busy stream's later entries
#: leave their waiters to read for themselves: the script's cost stays bounded).
SCAN = 64
#: Watched job ids sent with one XREAD (the longest-waiting first).
WATCHED = 64

#: KEYS: events stream, completed set, failed set. ARGV: the cursor (exclusive), the
#: entries to look at, the prefix of job keys, then the watched job ids.
#: Answers {job id, state, hash fields...} per watched job that finished.
SCRIPT = """
local watched = {}
for i = 4, #ARGV do watched[ARGV[i]] = true end
local found = {}
local entries = redis.call("XRANGE", KEYS[1], "(" .. ARGV[1], "+", "COUNT", ARGV[2])
for _, entry in ipairs(entries) do
  local fields = entry[2]
  local event, job_id
  for i = 1, #fields, 2 do
    local name = fields[i]
    if name == "event" then event = fields[i + 1]
    elseif name == "jobId" then job_id = fields[i + 1] end
  end
  if job_id and watched[job_id] and (event == "completed" or event == "failed") then
    watched[job_id] = nil
    local state = nil
    if redis.call("ZSCORE", KEYS[2], job_id) then state = "completed"
    elseif redis.call("ZSCORE", KEYS[3], job_id) then state = "failed" end
    if state then
      found[#found + 1] = {job_id, state, redis.call("HGETALL", ARGV[3] .. job_id)}
    end
  end
end
return found
"""
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


class FinalReads:
    """The script's command for one queue, and its answers as ``JobInfo`` s."""

    def __init__(self, key_base: str, to_info: Callable[[RawJob], JobInfo]) -> None:
        #: ``<prefix>:<queue>:``, the start of every key of the queue.
        self._keys = (f"{key_base}events", f"{key_base}completed", f"{key_base}failed")
        self._job_prefix = key_base
        self._to_info = to_info
        self._loaded = True  # assumed; a NOSCRIPT answer loads it with the next read
        #: False once the server refused the script for good (e.g. Redis before 6.2).
        self.enabled = True

    def commands(self, cursor: str, job_ids: Iterable[str]) -> list[tuple[Any, ...]]:
        """What to send behind the XREAD (its script loaded first where needed)."""
        call = ("EVALSHA", SHA, len(self._keys), *self._keys, cursor, SCAN,
                self._job_prefix, *job_ids)
        return [call] if self._loaded else [("SCRIPT", "LOAD", SCRIPT), call]

    def parse(self, replies: list[Any]) -> dict[str, JobInfo]:
        """The jobs the script read, by id, from the replies of :meth:`commands`."""
        answer = replies[-1]
        if isinstance(answer, NoScriptError):  # a restarted Redis: load it next time
            self._loaded = False
            return {}
        self._loaded = True
        if isinstance(answer, Exception):
            log.debug("final reads disabled: %s", answer)
            self.enabled = False
            return {}
        found: dict[str, JobInfo] = {}
        for job_id, state, flat in answer:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            if fields:
                found[str(job_id)] = self._to_info(raw_from_hash(fields, str(job_id),
                                                                 str(state)))
        return found
