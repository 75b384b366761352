"""The example application of the plugin host: services that enqueue, processors that work."""
