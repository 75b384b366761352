"""Plugins, under the import path the README documents (``from queuekit.plugins import
Plugin``); the module is :mod:`queuekit.runtime.plugins`."""

from queuekit.runtime.plugins import (
    ENTRY_POINT_GROUP,
    PLUGIN_ATTRIBUTE,
    Plugin,
    PluginSet,
    ProcessorBinding,
    effective_concurrency,
    entry_point_plugins,
    import_plugin,
    load_plugins,
    plugin_registry,
)

__all__ = ["ENTRY_POINT_GROUP", "PLUGIN_ATTRIBUTE", "Plugin", "PluginSet", "ProcessorBinding",
           "effective_concurrency", "entry_point_plugins", "import_plugin", "load_plugins",
           "plugin_registry"]
