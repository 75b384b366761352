"""Settings: defaults < config.yaml < .env < environment, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from queuekit import ConfigurationError, QueuekitSettings, load_settings
from queuekit.settings import CONFIG_ENV_VAR, KeepJobs, config_path, mask_url


def test_defaults_are_the_nestjs_job_options(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("queuekit.settings._PROJECT_CONFIG", tmp_path / "none.yaml")
    settings = load_settings()
    assert settings.redis.prefix == "queue"
    assert settings.jobs.attempts == 3
    assert settings.jobs.backoff.type == "exponential"
    assert settings.jobs.backoff.delay == 1000
    assert settings.jobs.remove_on_complete == KeepJobs(count=100, age=86400)
    assert settings.jobs.remove_on_fail == KeepJobs(count=500)
    assert settings.worker.concurrency == 5
    assert settings.worker.concurrency_for("reports") == 5


def test_yaml_then_dotenv_then_environment(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    config = tmp_path / "custom.yaml"
    config.write_text("redis:\n  port: 7000\n  prefix: from-yaml\n  pool_size: 3\n"
                      "worker:\n  queue_concurrency: {reports: 2}\n")
    (tmp_path / ".env").write_text("QUEUEKIT_REDIS__PREFIX=from-dotenv\n"
                                   "QUEUEKIT_REDIS__POOL_SIZE=4\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CONFIG_ENV_VAR, str(config))
    monkeypatch.setenv("QUEUEKIT_REDIS__POOL_SIZE", "9")
    settings = load_settings()
    assert config_path() == config
    assert settings.redis.port == 7000  # yaml over default
    assert settings.redis.prefix == "from-dotenv"  # .env over yaml
    assert settings.redis.pool_size == 9  # environment over .env
    assert settings.worker.concurrency_for("reports") == 2


def test_redis_url_from_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUEKIT_REDIS__URL", "redis://:pw@127.0.0.1:6390/2")
    settings = load_settings()
    assert settings.redis.effective_url == "redis://:pw@127.0.0.1:6390/2"
    assert settings.redis.safe_url == "redis://:***@127.0.0.1:6390/2"


def test_url_is_built_from_parts_with_the_password_masked() -> None:
    settings = QueuekitSettings(redis={"host": "cache.local", "port": 6380, "db": 3,
                                       "username": "app", "password": "p@ss/w", "tls": True})
    assert settings.redis.effective_url == "rediss://app:p%40ss%2Fw@cache.local:6380/3"
    assert settings.redis.safe_url == "rediss://app:***@cache.local:6380/3"
    assert "p@ss" not in repr(settings)
    assert QueuekitSettings(redis={"username": "u"}).redis.effective_url.startswith(
        "redis://u@")
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("env", "value", "path"),
    [
        ("QUEUEKIT_REDIS__POOL_SIZE", "0", "redis.pool_size"),
        ("QUEUEKIT_WORKER__CONCURRENCY", "many", "worker.concurrency"),
        ("QUEUEKIT_JOBS__BACKOFF__TYPE", "linear", "jobs.backoff.type"),
        ("QUEUEKIT_REDIS__URL", "http://example", "redis"),
        ("QUEUEKIT_BACKEND", "kafka", "backend"),
    ],
)
def test_bad_values_name_their_path(monkeypatch: pytest.MonkeyPatch, env: str, value: str,
                                    path: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigurationError, match=path.replace(".", r"\.")):
        load_settings()


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV_VAR, "/nonexistent/queuekit.yaml")
    with pytest.raises(ConfigurationError, match="no such file"):
        load_settings()


def test_unknown_yaml_keys_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("redis:\n  prot: 1\n")
    monkeypatch.setenv(CONFIG_ENV_VAR, str(config))
    with pytest.raises(ConfigurationError, match=r"redis\.prot"):
        load_settings()


def test_project_config_yaml_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    settings = QueuekitSettings()
    assert (root / "config.yaml").is_file()
    assert settings.backend == "redis"
