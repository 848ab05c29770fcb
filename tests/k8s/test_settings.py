"""The Kubernetes settings read from the environment."""

from __future__ import annotations

import pytest

from core.config import ConfigError, KubernetesSettings, Settings
from tests.k8s import samples


def test_defaults() -> None:
    k8s = Settings.from_env({}).kubernetes
    assert k8s == KubernetesSettings()
    assert (k8s.build_limit_cpu, k8s.build_limit_memory) == ("1", "1Gi")
    assert k8s.allow_priv_containers is False and k8s.ingress_class == ""
    assert k8s.slugbuilder_image == k8s.slugrunner_image == "teresa/stack:latest"


def test_values_from_env() -> None:
    settings = samples.settings(TERESAK8S_INSECURE="yes", TERESAK8S_CONFIG_FILE="/etc/kube/config")
    k8s = settings.kubernetes
    assert settings.runtime == "kubernetes"
    assert (k8s.host, k8s.username, k8s.password, k8s.insecure) == (
        "https://k8s.example.net:6443", "admin", samples.K8S_PASSWORD, True)
    assert k8s.config_file == "/etc/kube/config"
    assert (k8s.default_limit_cpu, k8s.default_request_memory, k8s.run_as_user) == ("750m", "64Mi", 2000)
    assert samples.K8S_PASSWORD not in repr(settings)
    assert samples.STORAGE_SECRET_VALUE not in repr(settings)


@pytest.mark.parametrize("name, value, message", [
    ("TERESA_BUILD_LIMIT_MEMORY", "lots", "TERESA_BUILD_LIMIT_MEMORY='lots' is not a Kubernetes quantity"),
    ("TERESA_ALLOW_PRIV_CONTAINERS", "maybe", "is not a boolean"),
    ("TERESA_RUN_AS_USER", "0", "must be a non-root user id"),
])
def test_bad_values_are_one_clear_sentence(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({name: value})
