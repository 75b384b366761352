"""Flows (BullMQ's ``FlowProducer``): a parent job runs after all its children, across queues.

``add_flow(FlowJob(...))`` validates every node of the tree first (payload, secrets,
options, name: one bad node and nothing is written), gives each node an id, and hands the
backend a flat list, depth first with every parent before its children, that it writes in
one atomic step (on Redis one MULTI/EXEC of BullMQ's ``addParentJob`` / ``addJob``
scripts, as Node's ``FlowProducer.add`` sends). A parent waits in ``waiting-children``
until its children are done; what a child's final failure does to its parent is its
options ``fail_parent_on_failure``, ``ignore_dependency_on_failure`` or
``remove_dependency_on_failure`` (none: the parent keeps waiting), as in BullMQ.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from queuekit.errors import FieldError, PayloadValidationError, UnknownQueueError
from queuekit.jobs import JobInfo, JobState
from queuekit.queues import QueueRegistry
from queuekit.records import JobData, OptionsArg, PreparedJob, RawJob
from queuekit.tracing import traced_jobs

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = logging.getLogger("queuekit")


@dataclass(frozen=True)
class FlowJob:
    """One node of a flow: a job on ``queue`` and the children it waits for."""

    queue: str
    name: str
    data: JobData
    options: OptionsArg = None
    children: Sequence[FlowJob] = ()


@dataclass(frozen=True)
class FlowNode:
    """A written (or read-back) flow: the node's job and its children's nodes."""

    job: JobInfo
    children: list[FlowNode] = field(default_factory=list)


@dataclass(frozen=True)
class FlowEntry:
    """One validated job of a flow, as a backend writes it."""

    job: PreparedJob
    job_id: str
    #: (queue, job id) of the parent, None for the root.
    parent: tuple[str, str] | None
    has_children: bool


@dataclass
class RawFlow:
    """A flow as a backend reads it back, before its jobs become ``JobInfo``."""

    queue: str
    job: RawJob
    children: list[RawFlow] = field(default_factory=list)

    def to_node(self, registry: QueueRegistry) -> FlowNode:
        """The public view of this tree."""
        return FlowNode(self.job.to_info(self.queue, registry),
                        [child.to_node(registry) for child in self.children])


def parse_job_key(prefix: str, key: str) -> tuple[str, str] | None:
    """(queue, job id) of a BullMQ job key ``<prefix>:<queue>:<id>``; None if not ours."""
    head = f"{prefix}:"
    if not key.startswith(head):
        return None
    queue, sep, job_id = key[len(head):].rpartition(":")
    return (queue, job_id) if sep and queue and job_id else None


class FlowsMixin(abc.ABC):
    """``QueueService``'s flow methods; the backends implement the hooks."""

    registry: QueueRegistry
    _tracer: Tracer | None

    async def add_flow(self, flow: FlowJob) -> FlowNode:
        """Validate the whole tree, then write it atomically; return its nodes.

        Parents come back in state ``waiting-children``. Errors name the node's path
        (``children[1].children[0].user_id``); when one is raised nothing was written.
        """
        self._ensure_open()
        if not isinstance(flow, FlowJob):
            raise PayloadValidationError("flow", [FieldError(
                "flow", f"expected FlowJob, got {type(flow).__name__}")])
        if not flow.children:
            raise PayloadValidationError("flow", [FieldError(
                "children", "a flow needs at least one child (use add_job for one job)")])
        entries: list[FlowEntry] = []
        self._flatten(flow, None, "", entries, set())
        for queue in dict.fromkeys(entry.job.queue for entry in entries):
            await self._admit([entry.job for entry in entries if entry.job.queue == queue])
        root = entries[0]
        with traced_jobs(self._tracer, "addFlow", root.job.queue, None, {
                "bullmq.flow.name": root.job.name, "bullmq.job.bulk.count": len(entries),
        }) as metadata:
            if metadata is not None:  # every node carries the addFlow span's context
                entries = [dataclasses.replace(e, job=dataclasses.replace(
                    e.job, trace_metadata=metadata)) for e in entries]
            await self._add_flow(entries)
        log.debug("flow %s added to %s (%d jobs)", root.job_id, root.job.queue, len(entries),
                  extra={"queue": root.job.queue, "job_id": root.job_id})
        return self._written_node(entries, 0, self._now_ms())[0]

    def _flatten(self, node: FlowJob, parent: tuple[str, str] | None, path: str,
                 entries: list[FlowEntry], ids: set[tuple[str, str]]) -> None:
        prepared = self._prepare_node(node, path)
        job_id = prepared.options.job_id or str(uuid.uuid4())  # Node's randomUUID ids
        if (prepared.queue, job_id) in ids:
            raise PayloadValidationError("flow", [FieldError(
                f"{path}options.job_id", f"job id {job_id!r} is used twice in this flow")])
        ids.add((prepared.queue, job_id))
        entries.append(FlowEntry(prepared, job_id, parent, bool(node.children)))
        for index, child in enumerate(node.children):
            child_path = f"{path}children[{index}]"
            if not isinstance(child, FlowJob):
                raise PayloadValidationError("flow", [FieldError(
                    child_path, f"expected FlowJob, got {type(child).__name__}")])
            self._flatten(child, (prepared.queue, job_id), f"{child_path}.", entries, ids)

    def _prepare_node(self, node: FlowJob, path: str) -> PreparedJob:
        try:
            return self.prepare_job(node.queue, node.name, node.data, node.options)
        except UnknownQueueError as exc:
            raise PayloadValidationError("flow", [FieldError(f"{path}queue", str(exc))]) from exc
        except PayloadValidationError as exc:
            errors = [FieldError(f"{path}{e.field}", e.message) for e in exc.errors]
            raise type(exc)(f"{exc.subject} (flow node {path.rstrip('.') or 'root'})",
                            errors) from exc

    def _written_node(self, entries: list[FlowEntry], index: int,
                      now: int) -> tuple[FlowNode, int]:
        """The node of ``entries[index]`` and the index after its subtree."""
        entry = entries[index]
        info = entry.job.info(entry.job_id, now)
        if entry.has_children:
            info = dataclasses.replace(info, state=JobState.WAITING_CHILDREN)
        children: list[FlowNode] = []
        following = index + 1
        me = (entry.job.queue, entry.job_id)
        while following < len(entries) and entries[following].parent == me:
            child, following = self._written_node(entries, following, now)
            children.append(child)
        return FlowNode(info, children), following

    async def get_flow(self, queue: str, job_id: str) -> FlowNode | None:
        """The tree under job ``job_id`` of ``queue``, with current states; None if there
        is no such job. Children that retention removed are left out."""
        self._ensure_open()
        raw = await self._get_raw_flow(str(queue), str(job_id))
        return None if raw is None else raw.to_node(self.registry)

    # -- what QueueService provides --------------------------------------------------

    @abc.abstractmethod
    def _ensure_open(self) -> None: ...

    @abc.abstractmethod
    def prepare_job(self, queue: str, name: str, data: JobData,
                    options: OptionsArg = None) -> PreparedJob: ...

    @abc.abstractmethod
    async def _admit(self, jobs: Sequence[PreparedJob]) -> None: ...

    @abc.abstractmethod
    def _now_ms(self) -> int: ...

    # -- backend hooks ---------------------------------------------------------------

    @abc.abstractmethod
    async def _add_flow(self, entries: Sequence[FlowEntry]) -> None:
        """Write every entry at once (parents before their children), or nothing."""

    @abc.abstractmethod
    async def _get_raw_flow(self, queue: str, job_id: str) -> RawFlow | None:
        """Read the tree under one job."""
