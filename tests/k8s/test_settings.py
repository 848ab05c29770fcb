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
    assert k8s.slugbuilder_image == k8s.slugrunner_image == ""  # no :latest: the server refuses to start (below)
    assert (k8s.image_pull_policy, k8s.image_pull_secrets, k8s.cluster_issuer) == ("", (), "")
    assert (k8s.start_grace, k8s.run_timeout) == (180.0, 3600)


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


def test_new_pod_settings_from_env() -> None:
    k8s = Settings.from_env({
        "TERESA_SLUGBUILDER_IMAGE": "registry.example.net/stack:7", "TERESA_IMAGE_PULL_POLICY": "Always",
        "TERESA_IMAGE_PULL_SECRETS": "regcred, mirror", "TERESA_POD_START_GRACE": "30", "TERESA_RUN_TIMEOUT": "600",
        "TERESA_INGRESS_CLUSTER_ISSUER": "letsencrypt", "TERESA_SLUG_URL_REFRESH_INTERVAL": "3600",
    }).kubernetes
    assert k8s.slugrunner_image == "registry.example.net/stack:7"  # the runner defaults to the builder's image
    assert (k8s.image_pull_policy, k8s.image_pull_secrets) == ("Always", ("regcred", "mirror"))
    assert (k8s.start_grace, k8s.run_timeout, k8s.cluster_issuer, k8s.slug_url_refresh) == (
        30.0, 600, "letsencrypt", 3600)


@pytest.mark.parametrize(("env", "sentence"), [
    ({"TERESA_IMAGE_PULL_POLICY": "always"},
     "TERESA_IMAGE_PULL_POLICY='always' is not a pull policy; use one of Always, IfNotPresent, Never."),
    ({"TERESA_IMAGE_PULL_SECRETS": "Reg_Cred"},
     "TERESA_IMAGE_PULL_SECRETS has 'Reg_Cred', which is not a Secret name; list names like regcred, other."),
    ({"TERESA_POD_START_GRACE": "soon"},
     "TERESA_POD_START_GRACE='soon' is not a positive number of seconds; set one like 180."),
])
def test_bad_pod_settings_are_one_sentence(env: dict[str, str], sentence: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    assert str(error.value) == sentence


@pytest.mark.parametrize(("env", "sentence"), [
    ({"TERESAFILESTORAGE_TYPE": "s3", "TERESAFILESTORAGE_AWS_BUCKET": "b"},
     "TERESA_SLUGBUILDER_IMAGE is not set; set it to the stack image pushed to your registry (a pinned tag or "
     "digest, like registry.example.com/teresa-stack:0.1.0)."),
    ({"TERESA_SLUGBUILDER_IMAGE": "registry.example.net/stack:7"},
     "TERESAFILESTORAGE_TYPE=local cannot serve pods on Kubernetes; set TERESAFILESTORAGE_TYPE=s3 and the "
     "TERESAFILESTORAGE_AWS_* settings."),
])
def test_the_kubernetes_runtime_refuses_to_start_without_an_image_or_with_local_storage(
        env: dict[str, str], sentence: str) -> None:
    from controller.runtime import make_runtime

    settings = Settings.from_env({"TERESA_RUNTIME": "kubernetes", "TERESAK8S_HOST": "https://k8s.example.net", **env})
    with pytest.raises(ConfigError) as error:
        make_runtime(settings)
    assert str(error.value) == sentence
