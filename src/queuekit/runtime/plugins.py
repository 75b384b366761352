"""Plugins: modules that bring processors and, where they add queues, their payload models.

A plugin module defines a module-level ``plugin``::

    plugin = Plugin(
        name="greetings",
        queues={"greetings": GreetingJobData},      # new queues and their payload models
        processors=[GreetingProcessor],             # WorkerHost classes or FunctionProcessor
        services={"greeter": Greeter},              # what the processors take, by name
        schedules={"hourly-greeting": {"queue": "greetings", "every": 3600_000,
                                       "data": {"name": "world"}}},   # job schedulers
    )

The host loads the modules named in the configuration (``plugins: [my_app.greetings]``)
and every object installed under the entry-point group ``queuekit.plugins``
(``[project.entry-points."queuekit.plugins"] greetings = "my_app.greetings"``). Loading a
plugin only imports it; which queues run workers in a process is the configuration's
business (``worker.enabled`` / ``worker.queues``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from queuekit.errors import ConfigurationError
from queuekit.payloads import JobPayload
from queuekit.processors import Processor, ProcessorSpec, queue_of
from queuekit.queues import QueueRegistry
from queuekit.settings import QueuekitSettings, ScheduleSettings

log = logging.getLogger("queuekit.plugins")

#: The entry-point group installed plugins register under.
ENTRY_POINT_GROUP = "queuekit.plugins"
#: The module attribute that holds a module's :class:`Plugin`.
PLUGIN_ATTRIBUTE = "plugin"


@dataclass(frozen=True)
class Plugin:
    """What a plugin provides to the host.

    ``processors``: :class:`~queuekit.processors.WorkerHost` subclasses (built by the host,
    constructor arguments injected by name) or
    :class:`~queuekit.processors.FunctionProcessor` s. ``queues``: the queues this plugin
    adds, with their payload models. ``services``: factories of objects the processors
    take by name that the container does not provide (built once per host, their own
    arguments injected the same way). ``schedules``: job schedulers by id (as the
    configuration's ``schedules:``), upserted when the host starts.
    """

    name: str
    processors: Sequence[ProcessorSpec] = ()
    queues: Mapping[str, type[JobPayload]] = field(default_factory=dict)
    services: Mapping[str, Callable[..., object]] = field(default_factory=dict)
    schedules: Mapping[str, ScheduleSettings | Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigurationError("a plugin needs a non-empty name")
        object.__setattr__(self, "schedules", {  # frozen: validated once, here
            scheduler_id: _schedule(self.name, scheduler_id, entry)
            for scheduler_id, entry in self.schedules.items()})
        for spec in self.processors:
            queue_of(spec)  # refuses anything that is not a processor, naming it


@dataclass(frozen=True)
class ProcessorBinding:
    """A processor ready to run: its queue, the callable and where it comes from."""

    queue: str
    processor: Processor
    concurrency: int | None
    plugin: str
    name: str


def _schedule(plugin: str, scheduler_id: str,
              entry: ScheduleSettings | Mapping[str, Any]) -> ScheduleSettings:
    if isinstance(entry, ScheduleSettings):
        return entry
    try:
        return ScheduleSettings.model_validate(dict(entry))
    except (ValidationError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"plugin {plugin!r}: schedules.{scheduler_id}: {exc}") from None


class PluginSet:
    """The plugins of one host, checked for clashes: one processor per queue, one factory
    per service name."""

    def __init__(self, plugins: Iterable[Plugin] = ()) -> None:
        unique: list[Plugin] = []
        for plugin in plugins:
            if any(p is plugin for p in unique):
                continue  # named in the configuration and installed as an entry point
            clash = next((p for p in unique if p.name == plugin.name), None)
            if clash is not None:
                raise ConfigurationError(f"two different plugins are named {plugin.name!r}; "
                                         "rename one of them")
            unique.append(plugin)
        self.plugins: tuple[Plugin, ...] = tuple(unique)
        owners: dict[str, str] = {}
        services: dict[str, str] = {}
        for plugin in self.plugins:
            for spec in plugin.processors:
                queue = queue_of(spec)
                if queue in owners:
                    raise ConfigurationError(
                        f"queue {queue!r} has processors in plugins {owners[queue]!r} and "
                        f"{plugin.name!r}; a queue runs one processor per process"
                    )
                owners[queue] = plugin.name
            for service in plugin.services:
                if service in services:
                    raise ConfigurationError(
                        f"service {service!r} is provided by plugins {services[service]!r} "
                        f"and {plugin.name!r}; rename one of them"
                    )
                services[service] = plugin.name

    def __iter__(self) -> Iterator[Plugin]:
        return iter(self.plugins)

    def __len__(self) -> int:
        return len(self.plugins)

    def __repr__(self) -> str:
        return f"PluginSet({[p.name for p in self.plugins]!r})"

    @property
    def names(self) -> list[str]:
        """The plugin names, in load order."""
        return [p.name for p in self.plugins]

    def processors(self) -> Iterator[tuple[Plugin, ProcessorSpec]]:
        """Every processor with the plugin that provides it."""
        for plugin in self.plugins:
            for spec in plugin.processors:
                yield plugin, spec

    def processor_queues(self) -> list[str]:
        """The queues that have a processor, sorted."""
        return sorted(queue_of(spec) for _, spec in self.processors())

    def service(self, name: str) -> Callable[..., object] | None:
        """The factory of the plugin service ``name``, or None."""
        for plugin in self.plugins:
            if name in plugin.services:
                return plugin.services[name]
        return None

    def schedules(self, settings: QueuekitSettings) -> dict[str, ScheduleSettings]:
        """The declared job schedulers: the plugins', then the configuration's
        ``schedules:`` (which may redefine a plugin's, by id). Two plugins declaring the
        same id is a :class:`ConfigurationError`."""
        declared: dict[str, ScheduleSettings] = {}
        owners: dict[str, str] = {}
        for plugin in self.plugins:
            for scheduler_id, entry in plugin.schedules.items():
                if scheduler_id in owners:
                    raise ConfigurationError(
                        f"job scheduler {scheduler_id!r} is declared by plugins "
                        f"{owners[scheduler_id]!r} and {plugin.name!r}; rename one of them")
                owners[scheduler_id] = plugin.name
                declared[scheduler_id] = _schedule(plugin.name, scheduler_id, entry)
        declared.update(settings.schedules)
        return declared

    def register_queues(self, registry: QueueRegistry) -> QueueRegistry:
        """Register every plugin queue in ``registry`` (again is fine); return it."""
        for plugin in self.plugins:
            for queue, model in plugin.queues.items():
                try:
                    registry.register(queue, model)
                except ConfigurationError as exc:
                    raise ConfigurationError(f"plugin {plugin.name!r}: {exc}") from None
        return registry


def import_plugin(reference: str, origin: str = "the configuration's `plugins:`") -> Plugin:
    """The :class:`Plugin` that ``reference`` names: ``package.module`` (its ``plugin``
    attribute) or ``package.module:attribute``."""
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"plugin {reference!r} (from {origin}) cannot be imported: {exc}; install it or "
            "correct the module name"
        ) from exc
    found = getattr(module, attribute or PLUGIN_ATTRIBUTE, None)
    return _as_plugin(found, reference, origin)


def _as_plugin(found: object, reference: str, origin: str) -> Plugin:
    if isinstance(found, Plugin):
        return found
    if found is not None and hasattr(found, PLUGIN_ATTRIBUTE):  # an entry point naming a module
        return _as_plugin(getattr(found, PLUGIN_ATTRIBUTE), reference, origin)
    raise ConfigurationError(
        f"plugin {reference!r} (from {origin}) is not a queuekit plugin: define "
        f"`{PLUGIN_ATTRIBUTE} = Plugin(name=..., processors=[...])` in the module"
    )


def entry_point_plugins() -> list[Plugin]:
    """The plugins installed under the entry-point group ``queuekit.plugins``."""
    plugins = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {entry.name!r} of group {ENTRY_POINT_GROUP!r}"
        try:
            found: Any = entry.load()
        except ImportError as exc:
            raise ConfigurationError(
                f"plugin {entry.value!r} ({origin}) cannot be imported: {exc}; reinstall "
                "the package that declares it"
            ) from exc
        plugins.append(_as_plugin(found, entry.value, origin))
    return plugins


def load_plugins(settings: QueuekitSettings, *, entry_points: bool = True) -> PluginSet:
    """The plugins named in ``settings.plugins``, then the installed entry points."""
    plugins = [import_plugin(reference) for reference in settings.plugins]
    if entry_points:
        plugins.extend(entry_point_plugins())
    loaded = PluginSet(plugins)
    if loaded.plugins:
        log.info("plugins loaded: %s", ", ".join(loaded.names))
    return loaded


def plugin_registry(plugins: PluginSet) -> QueueRegistry:
    """The shared queues plus every queue the plugins add."""
    return plugins.register_queues(QueueRegistry())


def effective_concurrency(settings: QueuekitSettings, queue: str, declared: int | None,
                          override: int | None = None) -> int:
    """Jobs at once for ``queue``: the command line's ``override``, else
    ``worker.queue_concurrency``, else what the processor declares, else
    ``worker.concurrency``."""
    if override is not None:
        return override
    configured = settings.worker.queue_concurrency.get(str(queue))
    if configured is not None:
        return configured
    return declared if declared is not None else settings.worker.concurrency
