from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, Settings


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = Settings.from_env({"TERESA_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'teresa.sqlite'}"
    assert settings.storage.type == "local" and settings.runtime == "local"
    assert settings.ssh_addr == ("127.0.0.1", 2222)


def test_original_teresa_database_variables_select_mysql() -> None:
    settings = Settings.from_env({"TERESADB_HOSTNAME": "db.internal", "TERESADB_PORT": "3307",
                                  "TERESADB_USERNAME": "teresa", "TERESADB_PASSWORD": "p@ss:word",
                                  "TERESADB_DATABASE": "paas"})
    assert settings.database_url == "mysql+pymysql://teresa:p%40ss%3Aword@db.internal:3307/paas?charset=utf8mb4"
    assert "p%40ss" not in repr(settings) and "p@ss" not in repr(settings)


@pytest.mark.parametrize("env, fragment", [
    ({"TERESA_SSH_ADDR": "nonsense"}, "TERESA_SSH_ADDR"),
    ({"TERESAFILESTORAGE_TYPE": "ftp"}, "TERESAFILESTORAGE_TYPE"),
    ({"TERESA_BUILD_TIMEOUT": "soon"}, "TERESA_BUILD_TIMEOUT"),
    ({"TERESA_RUNTIME": "nomad"}, "TERESA_RUNTIME"),
    ({"TERESA_BACKUP_INTERVAL": "-60"}, "TERESA_BACKUP_INTERVAL"),
    ({"TERESA_BACKUP_INTERVAL": "hourly"}, "TERESA_BACKUP_INTERVAL"),
    ({"TERESA_ROUTER_RESPONSE_TIMEOUT": "0"}, "TERESA_ROUTER_RESPONSE_TIMEOUT"),
    ({"TERESA_METRICS_TOKEN": "short"}, "TERESA_METRICS_TOKEN"),
    ({"TERESA_METRICS_TOKEN": "sixteen or more but spaced"}, "TERESA_METRICS_TOKEN"),
])
def test_bad_settings_name_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Settings.from_env(env)


@pytest.mark.parametrize("value, seconds", [("", 3600), ("600", 600), ("0", 0)])
def test_backup_interval_is_seconds_with_zero_for_none(value: str, seconds: int) -> None:
    assert Settings.from_env({"TERESA_BACKUP_INTERVAL": value}).backup_interval == seconds


def test_the_routers_response_timeout_is_heroku_s_by_default() -> None:
    assert Settings.from_env({}).router_response_timeout == 30
    assert Settings.from_env({"TERESA_ROUTER_RESPONSE_TIMEOUT": "120"}).router_response_timeout == 120
