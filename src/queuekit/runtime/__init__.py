"""Running a plugin host: plugins, the worker runner, metrics and the monitoring views.

Above the backends: everything here talks to queues through the ``QueueService``
contract, and to the application through the :class:`~queuekit.runtime.host.Host`
protocol that the composition root (``containers/``) implements.
"""
