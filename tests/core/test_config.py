from __future__ import annotations

import hashlib
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


@pytest.mark.parametrize(("env", "sentence"), [
    ({"TERESA_PUSH_KEEPALIVE_SECONDS": "soon"},
     "TERESA_PUSH_KEEPALIVE_SECONDS='soon' is not a positive number of seconds; set one like 5."),
    ({"TERESA_PUSH_KEEPALIVE_SECONDS": "0"},
     "TERESA_PUSH_KEEPALIVE_SECONDS='0' is not a positive number of seconds; set one like 5."),
    ({"TERESAK8S_POLL_INTERVAL": "fast"},
     "TERESAK8S_POLL_INTERVAL='fast' is not a number of seconds; set it like 0.5."),
    ({"TERESAK8S_POLL_INTERVAL": "600"},
     "TERESAK8S_POLL_INTERVAL='600' is not a number of seconds; set it like 0.5."),
])
def test_settings_read_at_the_first_push_are_refused_at_start_up(env: dict[str, str], sentence: str) -> None:
    """They were read from the environment where they were used: a bad value was an internal error then."""
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    assert str(error.value) == sentence


def test_push_keepalive_and_poll_interval_are_settings() -> None:
    assert (Settings.from_env({}).push_keepalive_seconds, Settings.from_env({}).kubernetes.poll_interval) == (5.0, 1.0)
    settings = Settings.from_env({"TERESA_PUSH_KEEPALIVE_SECONDS": "0.2", "TERESAK8S_POLL_INTERVAL": "0.5"})
    assert (settings.push_keepalive_seconds, settings.kubernetes.poll_interval) == (0.2, 0.5)


@pytest.mark.parametrize(("env", "url"), [
    ({}, "http://127.0.0.1:8082"),
    ({"TERESA_DASHBOARD_ADDR": "0.0.0.0:9000"}, "http://127.0.0.1:9000"),
    ({"TERESA_DASHBOARD_ADDR": "[::1]:9000"}, "http://[::1]:9000"),
    ({"TERESA_DASHBOARD_ADDR": "0.0.0.0:9000", "TERESA_DASHBOARD_URL": "https://teresa.example.com/"},
     "https://teresa.example.com"),
])
def test_the_dashboard_url_defaults_to_its_address(env: dict[str, str], url: str) -> None:
    assert Settings.from_env(env).dashboard_url == url


@pytest.mark.parametrize(("env", "public"), [
    ({}, ("127.0.0.1", 2222)),
    ({"TERESA_SSH_ADDR": "0.0.0.0:2022"}, ("127.0.0.1", 2022)),
    ({"TERESA_SSH_ADDR": "0.0.0.0:2022", "TERESA_SSH_PUBLIC_ADDR": "teresa.example.com"}, ("teresa.example.com", 22)),
])
def test_the_public_ssh_address_defaults_to_the_listener(env: dict[str, str], public: tuple[str, int]) -> None:
    assert Settings.from_env(env).public_ssh_addr == public


def test_derived_defaults_follow_the_data_dir_and_the_runtime(tmp_path: Path) -> None:
    settings = Settings.from_env({"TERESA_DATA_DIR": str(tmp_path), "TERESAK8S_HOST": "https://k8s.example.net"})
    assert settings.storage.root == tmp_path / "storage"
    assert settings.replica_name.endswith("-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8])
    assert (settings.runtime, settings.dashboard_enabled) == ("kubernetes", False)
    assert Settings.from_env({"TERESA_REPLICA_NAME": "one"}).replica_name == "one"
    assert Settings.from_env({}).data_dir == Path(".teresa").absolute()


def test_storage_travels_to_a_child_process_as_the_same_variables(tmp_path: Path) -> None:
    s3 = {"TERESAFILESTORAGE_TYPE": "s3", "TERESAFILESTORAGE_AWS_KEY": "k", "TERESAFILESTORAGE_AWS_SECRET": "s",
          "TERESAFILESTORAGE_AWS_REGION": "eu-west-1", "TERESAFILESTORAGE_AWS_BUCKET": "b",
          "TERESAFILESTORAGE_AWS_ENDPOINT": "http://127.0.0.1:9000"}
    assert Settings.from_env(s3).storage.to_env() == s3
    local = Settings.from_env({"TERESA_DATA_DIR": str(tmp_path)}).storage
    assert local.to_env() == {"TERESAFILESTORAGE_TYPE": "local", "TERESAFILESTORAGE_LOCAL_ROOT": str(tmp_path / "storage")}
    assert Settings.from_env(local.to_env()).storage == local
