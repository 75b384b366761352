"""YAML configuration files for tests that run the ``queuekit`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: Where the project (and so ``tests.support.sample_plugin``) can be imported from.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_PLUGIN = "tests.support.sample_plugin"
DEMO_PLUGIN = "queuekit.demo.plugin"


def write_config(path: Path, redis_url: str, prefix: str, plugins: list[str],
                 **sections: Any) -> Path:
    """A config file for ``redis_url`` under key ``prefix``; ``sections`` are merged in.

    Workers block for at most 1 s when idle, so SIGTERM ends them quickly.
    """
    worker = {"drain_delay": 1.0, "shutdown_timeout": 5.0, **sections.pop("worker", {})}
    config = {"redis": {"url": redis_url, "prefix": prefix}, "worker": worker,
              "plugins": plugins, **sections}
    path.write_text(yaml.safe_dump(config))
    return path
