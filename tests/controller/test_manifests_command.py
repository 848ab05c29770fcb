"""`manifests APP`, `limits:set` and `autoscale:set` on the local runtime: no cluster needed."""

from __future__ import annotations

import json

import kubernetes_validate
import yaml

from tests.fixtures.teresa import Deploy
from tests.gitreceiver.conftest import WEB_APP


def objects(deploy: Deploy) -> dict[str, dict]:
    status, out, err = deploy.command("manifests shop")
    assert status == 0, err
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in yaml.safe_load_all(out) if o}


def test_manifests_limits_and_autoscale_of_a_deployed_app(deploy: Deploy) -> None:
    assert deploy.command("manifests shop")[2] == "error: shop has no release yet; push to deploy it first.\n"
    deploy.command("config:set shop DATABASE_PASSWORD=hunter2-secret")
    deploy.git.commit(WEB_APP)
    assert deploy.git.push("shop").returncode == 0

    status, out, err = deploy.command("limits:set shop --type web --cpu 250m --memory 256Mi")
    assert status == 0, err
    assert deploy.command("limits:set shop --cpu lots")[2].startswith("error: --cpu lots is not a Kubernetes quantity")
    status, out, err = deploy.command("autoscale:set shop --min 2 --max 5 --cpu 60")
    assert status == 0, err
    assert deploy.command("autoscale:set shop --min 3 --max 2 --cpu 60")[2].startswith("error: --max 2 is below")
    assert json.loads(deploy.command("releases shop --json")[1])[0]["reason"] == "autoscale web 2-5 at 60% CPU"

    rendered = objects(deploy)
    assert {"Namespace/shop", "Deployment/web", "Service/web", "HorizontalPodAutoscaler/web"} <= set(rendered)
    container = rendered["Deployment/web"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "250m", "memory": "256Mi"}
    assert rendered["HorizontalPodAutoscaler/web"]["spec"]["minReplicas"] == 2
    assert "hunter2" not in deploy.command("manifests shop")[1]
    for name, obj in rendered.items():
        kubernetes_validate.validate(obj, "1.37", strict=True)

    assert deploy.command("autoscale:unset shop")[0] == 0
    assert "HorizontalPodAutoscaler/web" not in objects(deploy)


def test_limits_and_autoscale_are_bounded_by_the_operator_maxima(deploy: Deploy) -> None:
    """Issue 12: one team's limits or replicas must not take the cluster; the sentence names the setting."""
    status, _, err = deploy.command("limits:set shop --cpu 3")
    assert (status, err) == (1, "error: --cpu 3 is more than this server allows (TERESA_MAX_LIMIT_CPU=2); "
                                "ask for 2 or less, or ask the operator to raise TERESA_MAX_LIMIT_CPU.\n")
    status, _, err = deploy.command("limits:set shop --memory 5Gi")
    assert status == 1 and "(TERESA_MAX_LIMIT_MEMORY=4Gi)" in err
    status, _, err = deploy.command("autoscale:set shop --min 2 --max 11 --cpu 60")
    assert status == 1 and "--max 11 is more than this server allows (TERESA_MAX_REPLICAS=10)" in err
    assert deploy.command("limits:set shop --cpu 2 --memory 4Gi")[0] == 0
    assert deploy.command("autoscale:set shop --min 2 --max 10 --cpu 60")[0] == 0
