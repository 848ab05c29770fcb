"""Teresa's ServiceAccount may do what the Kubernetes runtime calls, and nothing more, as the real apiserver sees it.

The list of what the runtime uses is controller/runtime/kubernetes/permissions.py;
the grants are deploy/base's ClusterRole (rendered with kustomize) and what a
SelfSubjectRulesReview made with the ServiceAccount's token reports.
"""

from __future__ import annotations

import kubernetes.client

from controller.runtime.kubernetes import permissions
from controller.runtime.kubernetes.client import KINDS
from tests.cluster.conftest import deploy_base
from tests.cluster.kubecluster import KubeCluster



def rules_review(kube_cluster: KubeCluster, token: str) -> kubernetes.client.V1SubjectRulesReviewStatus:
    """What the token's subject may do in an app's namespace, as the apiserver's authorizers say."""
    with kube_cluster.api_client(token=token) as client:
        review = kubernetes.client.AuthorizationV1Api(client).create_self_subject_rules_review(
            kubernetes.client.V1SelfSubjectRulesReview(spec=kubernetes.client.V1SelfSubjectRulesReviewSpec(
                namespace="some-app")))
    assert not review.status.incomplete, review.status.evaluation_error
    return review.status


def granted(status: kubernetes.client.V1SubjectRulesReviewStatus) -> dict[tuple[str, str], frozenset[str]]:
    return permissions.grants([{"apiGroups": r.api_groups or [], "resources": r.resources or [], "verbs": r.verbs}
                               for r in status.resource_rules])


def test_the_cluster_role_grants_exactly_what_the_runtime_uses() -> None:
    role = next(o for o in deploy_base() if o["kind"] == "ClusterRole")
    granted = permissions.grants(role["rules"])  # type: ignore[arg-type]
    assert permissions.excess(granted) == [], "deploy/base grants what the code does not use: tighten it"
    assert permissions.missing(granted) == [], "the code uses what deploy/base does not grant"


def test_every_kind_the_client_can_reach_is_listed_as_used() -> None:
    used = {resource for _group, resource in permissions.USED}
    assert {kind.plural for kind in KINDS.values()} <= used


def test_the_service_account_may_do_nothing_the_runtime_does_not_use(
    kube_cluster: KubeCluster, teresa_token: str,
) -> None:
    # What every authenticated subject may do (ask what it may do, read trust bundles...): a ServiceAccount bound to nothing.
    kube_cluster.kubectl("create", "serviceaccount", "nobody", "-n", "teresa")
    everyone = granted(rules_review(kube_cluster, kube_cluster.service_account_token("teresa", "nobody", seconds=600)))
    status = rules_review(kube_cluster, teresa_token)
    teresa = {key: verbs - everyone.get(key, frozenset()) for key, verbs in granted(status).items()}
    assert permissions.excess(teresa) == [], "deploy/base grants what the code does not use: tighten it"
    assert permissions.missing(teresa) == [], "the code uses what deploy/base does not grant"
    assert not any(set(r.verbs) & {"*", "escalate", "bind", "impersonate"} for r in status.resource_rules)
