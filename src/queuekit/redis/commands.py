"""BullMQ's add-job script calls, built by queuekit for the hot path.

``bullmq.Queue.add`` builds a ``Job`` object, re-derives keys and options and packs them
on every call; that is most of an add's client CPU. :class:`AddJobCommand` builds the
same ``EVALSHA`` (same Lua script, same keys, same msgpack/JSON arguments as bullmq's
``Scripts.addJob``: a test checks them against bullmq's own) from what queuekit already
validated, with the per-queue parts computed once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Mapping
from json.encoder import (  # type: ignore[attr-defined]
    c_make_encoder,
    encode_basestring_ascii,
)
from typing import Any

import msgpack
from redis.exceptions import NoScriptError

from queuekit.redis.keys import (
    ADD_DELAYED_KEYS,
    ADD_PRIORITIZED_KEYS,
    ADD_STANDARD_KEYS,
    COMPLETED_METRICS,
    MOVE_TO_FINISHED_KEYS,
    dedup_key_under,
)
from queuekit.redis.pipeline import AutoPipeline
from queuekit.redis.wire import DEDUP_OPT, bullmq_job_opts


def _not_json(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: BullMQ's compact JSON (``json.dumps(value, separators=(",", ":"), allow_nan=False)``,
#: checked by a test). ``JSONEncoder.encode`` builds its C encoder on every call: this one
#: is built once, without the circularity check (a circular value, which no pydantic
#: dump is, fails with RecursionError rather than ValueError).
_encode = (c_make_encoder(None, _not_json, encode_basestring_ascii, None, ":", ",",
                          False, False, False) if c_make_encoder is not None else None)
_encode_slowly = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _dumps(value: Any) -> str:
    if _encode is None:  # pragma: no cover - CPython has the C encoder
        return _encode_slowly(value)
    return "".join(_encode(value, 0))


#: msgpack: a fixarray of 9, five nils, and the range packed as uint64 (0xcf).
_ARGS_HEADER = b"\x99"
_FIVE_NILS = b"\xc0" * 5
_UINT64_FLOOR, _UINT64_CEIL = 1 << 32, 1 << 64
_MAX_HEADS = 256
#: A fixmap of 11 entries, then the key "token" (its value is packed per job).
_COMPLETE_HEAD = b"\x8b\xa5token"


class AddJobCommand:
    """``addStandardJob`` / ``addDelayedJob`` / ``addPrioritizedJob`` for one queue."""

    def __init__(self, bull_queue: Any, pipe: AutoPipeline) -> None:
        scripts = bull_queue.scripts
        self._scripts = scripts
        self._prefix_key = scripts.keys[""]
        self._commands = scripts.commands
        self._pipe = pipe
        self._keys = {
            "addStandardJob": scripts.getKeys(list(ADD_STANDARD_KEYS)),
            "addDelayedJob": scripts.getKeys(list(ADD_DELAYED_KEYS)),
            "addPrioritizedJob": scripts.getKeys(list(ADD_PRIORITIZED_KEYS)),
        }
        # The packed options of the last options object (most adds of a service pass
        # the same one: its converted defaults); the object is kept, so its id is ours.
        self._opts: Mapping[str, Any] | None = None
        self._packed_opts = b""
        self._heads: dict[str, bytes] = {}  # name -> packed [prefix, "", name] sans header

    def build(self, name: str, data: Any, opts: Mapping[str, Any],
              timestamp: int | None = None) -> tuple[str, list[str], list[Any]]:
        """(script name, keys, args) exactly as bullmq's ``Scripts.addJob`` sends them."""
        if timestamp is None:
            timestamp = round(time.time() * 1000)
        dedup = opts.get(DEDUP_OPT)
        job_id = opts.get("jobId") or ""
        if not job_id and not dedup and _UINT64_FLOOR <= timestamp < _UINT64_CEIL:
            # The common case: msgpack's bytes of [prefix, "", name, timestamp, nil x 5]
            # from a head kept per name (what packb gives: a test checks it).
            head = self._heads.get(name)
            if head is None:
                if len(self._heads) >= _MAX_HEADS:  # names made per job: keep it bounded
                    self._heads.clear()
                head = self._heads[name] = msgpack.packb(
                    [self._prefix_key, "", name], use_bin_type=True)[1:]
            packed_args = b"".join((_ARGS_HEADER, head, b"\xcf",
                                    timestamp.to_bytes(8, "big"), _FIVE_NILS))
        else:
            packed_args = msgpack.packb(
                [self._prefix_key, job_id, name, timestamp, None, None, None, None,
                 dedup_key_under(self._prefix_key, dedup["id"]) if dedup else None],
                use_bin_type=True,
            )
        if opts is not self._opts:
            self._packed_opts = msgpack.packb(bullmq_job_opts(opts))
            self._opts = opts
        # ``data``: the payload's JSON already (bytes), or a JSON-ready value.
        args: list[Any] = [packed_args, data if type(data) is bytes else _dumps(data),
                           self._packed_opts]
        delay = opts.get("delay")
        if delay:
            script = "addDelayedJob"
            args.append(delay)
        elif opts.get("priority"):
            script = "addPrioritizedJob"
            args.append(opts["priority"])
        else:
            script = "addStandardJob"
            args.append(timestamp)
        return script, self._keys[script], args

    def start_many(self, client: Any,
                   calls: list[tuple[str, list[str], list[Any]]]) -> Awaitable[list[str]]:
        """:meth:`add_many`, written now where it can be: the awaitable of the ids, which
        must be awaited.

        When every call runs one script (the common case) the scripts are not checked
        first: had the server lost that script, every call of the transaction fails with
        ``NOSCRIPT`` and none ran, so it is loaded and the whole transaction sent again.
        """
        names = {name for name, _, _ in calls}
        if not self._pipe.transactions or len(names) != 1:
            return self.add_many(client, calls)
        script = self._commands[names.pop()]
        commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for _, keys, args in calls]
        return self._ids_or_again(self._pipe.start_transaction(commands), client, calls)

    async def _ids_or_again(self, pending: Awaitable[list[Any]], client: Any,
                            calls: list[tuple[str, list[str], list[Any]]]) -> list[str]:
        results = await pending
        if results and all(isinstance(result, NoScriptError) for result in results):
            return await self.add_many(client, calls)  # loads the script first
        return self._ids(results)

    async def add_many(self, client: Any,
                       calls: list[tuple[str, list[str], list[Any]]]) -> list[str]:
        """Send built calls in one MULTI/EXEC, all or none (bullmq's ``addBulk`` sends a
        plain pipeline); return the ids. On one server the transaction goes out as one
        write through the auto-pipeline's connections.

        The scripts are loaded first (through ``client``): a ``NOSCRIPT`` inside the
        transaction would fail some adds while the others went through.
        """
        scripts = await self._load(client, [name for name, _, _ in calls])
        commands = [("EVALSHA", scripts[name].sha, len(keys), *keys, *args)
                    for name, keys, args in calls]
        if self._pipe.transactions:
            results = await self._pipe.transaction(commands)
        else:  # a cluster: redis-py's pipeline sends it to the node of its one slot
            async with client.pipeline(transaction=True) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                results = await pipe.execute()
        return self._ids(results)

    def _ids(self, results: list[Any]) -> list[str]:
        for result in results:
            if isinstance(result, Exception):
                raise result
            if isinstance(result, int) and result < 0:
                raise self._scripts.finishedErrors({"code": result, "command": "addJob"})
        return [str(result) for result in results]

    async def _load(self, client: Any, names: list[str]) -> dict[str, Any]:
        scripts = {name: self._commands[name] for name in names}
        loaded = await client.script_exists(*(script.sha for script in scripts.values()))
        for script, present in zip(scripts.values(), loaded, strict=True):
            if not present:
                script.sha = await client.script_load(script.script)
        return scripts

    async def add_watching(self, client: Any, call: tuple[str, list[str], list[Any]],
                           key: str) -> tuple[str, str | None]:
        """Send one built call in a MULTI after ``GET key``: (the id, the key's value
        just before the script ran). For deduplication: an answer equal to the value
        before means the add was a duplicate."""
        name, keys, args = call
        script = (await self._load(client, [name]))[name]
        async with client.pipeline(transaction=True) as pipe:
            pipe.get(key)
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            before, result = await pipe.execute()
        if isinstance(result, int) and result < 0:
            raise self._scripts.finishedErrors({"code": result, "command": "addJob"})
        return str(result), None if before is None else str(before)

    async def __call__(self, name: str, data: Any, opts: Mapping[str, Any]) -> str:
        """Add one job; return its id (bullmq's errors for negative codes)."""
        return await self.start(name, data, opts)

    def start(self, name: str, data: Any, opts: Mapping[str, Any],
              timestamp: int | None = None) -> Awaitable[str]:
        """Send the add now (where the auto-pipeline can: see ``AutoPipeline.send``); the
        awaitable of the job's id, which must be awaited."""
        script_name, keys, args = self.build(name, data, opts, timestamp)
        script = self._commands[script_name]
        reply = self._pipe.send("EVALSHA", script.sha, len(keys), *keys, *args)
        return self._job_id(reply, script, keys, args)

    async def _job_id(self, reply: Awaitable[Any], script: Any, keys: list[str],
                      args: list[Any]) -> str:
        try:
            result = await reply
        except NoScriptError:  # a restarted server lost its script cache: load it again
            result = await self._pipe.run_script(script, keys, args, lost=True)
        if isinstance(result, int) and result < 0:
            raise self._scripts.finishedErrors({"code": result, "command": "addJob"})
        return str(result)


class CompleteJobCommand:
    """``moveToFinished`` (completed) with fetch-next, as bullmq's
    ``Scripts.moveToCompletedArgs`` builds it (a test checks them against each other)."""

    def __init__(self, scripts: Any, lock_duration: int,
                 limiter: dict[str, int] | None = None) -> None:
        self._limiter = limiter  # fetch-next counts against (and obeys) the limiter
        self._prefix_key = scripts.keys[""]
        self._keys = scripts.getKeys(list(MOVE_TO_FINISHED_KEYS))
        self._metrics = scripts.toKey(COMPLETED_METRICS)
        self._marker = scripts.keys["marker"]
        self._lock_duration = lock_duration
        self._rest: dict[tuple[Any, ...], bytes] = {}

    def _options_after_token(self, keep: Mapping[str, Any], attempts: int,
                             attempts_made: int) -> dict[str, Any]:
        """The options map's entries after ``token``, in BullMQ's order."""
        return {
            "keepJobs": dict(keep),
            "limiter": self._limiter,
            "lockDuration": self._lock_duration,
            "attempts": attempts,
            "attemptsMade": attempts_made,
            "maxMetricsSize": "",
            "fpof": False,
            "cpof": False,
            "idof": False,
            "rdof": False,
        }

    def build(self, job_id: str, attempts: int, attempts_made: int,
              keep: Mapping[str, Any], token: str, value: Any, fetch_next: bool,
              timestamp: int | None = None) -> tuple[list[str], list[Any]]:
        """(keys, args) of the script call; ``keep`` is BullMQ's ``keepJobs``."""
        if timestamp is None:
            timestamp = round(time.time() * 1000)
        # msgpack of {"token": token, "keepJobs": keep, ...}: the entries after the token
        # are the same for every job of one options text, so they are packed once.
        try:
            key = (attempts, attempts_made, *keep.items())
            rest = self._rest.get(key)
        except TypeError:  # an unhashable keepJobs value: packed every time
            key, rest = None, None
        if rest is None:
            rest = msgpack.packb(self._options_after_token(keep, attempts, attempts_made),
                                 use_bin_type=True)[1:]  # without its fixmap header
            if key is not None:
                if len(self._rest) >= _MAX_HEADS:
                    self._rest.clear()
                self._rest[key] = rest
        packed = b"".join((_COMPLETE_HEAD, msgpack.packb(token, use_bin_type=True), rest))
        keys = [*self._keys, f"{self._prefix_key}{job_id}", self._metrics, self._marker]
        args = [job_id, timestamp, "returnvalue",
                _dumps(value) or "",
                "completed", "1" if fetch_next else "", self._prefix_key, packed]
        return keys, args
