"""What Teresa's ServiceAccount needs from the API server: each resource the Kubernetes runtime calls, with its verbs.

deploy/base/clusterrole.yaml grants exactly this and nothing more; a test on the
real cluster (tests/cluster/test_rbac_on_cluster.py) compares it with the
ClusterRole rendered by kustomize and with what the API server reports the
ServiceAccount may do. A change that calls a new resource or verb adds it here
and to the ClusterRole in the same commit.

Server-side apply (`KubeClient.apply`) is a PATCH that creates a missing object,
so every applied resource needs `create` and `patch`.
"""

from __future__ import annotations

APPLY = frozenset({"create", "patch"})

# (API group, resource) -> verbs; "" is the core group.
USED: dict[tuple[str, str], frozenset[str]] = {
    # apps:create applies it, ps and logs read it, apps:destroy deletes it.
    ("", "namespaces"): APPLY | {"get", "delete"},
    # apps:create applies these once per app.
    ("", "serviceaccounts"): APPLY,
    ("", "limitranges"): APPLY,
    ("", "resourcequotas"): APPLY,
    ("networking.k8s.io", "networkpolicies"): APPLY,
    # Config and slug Secrets are applied, build Secrets created and deleted, old config Secrets pruned;
    # image pull Secrets read in Teresa's namespace and copied; slug URLs renewed and orphans removed (list).
    ("", "secrets"): APPLY | {"get", "list", "delete"},
    # Build, release-phase and one-off pods are created, read and deleted; app pods listed (ps, logs, rollouts).
    ("", "pods"): frozenset({"create", "get", "list", "delete"}),
    ("", "pods/log"): frozenset({"get"}),
    # run: the client's stdin (and terminal) through an attach; the WebSocket upgrade is a GET, checked as create too.
    ("", "pods/attach"): frozenset({"get", "create"}),
    ("apps", "deployments"): APPLY | {"get", "list", "delete"},
    # Rollout progress: the ReplicaSet of a Deployment's current revision.
    ("apps", "replicasets"): frozenset({"list"}),
    ("", "services"): APPLY | {"list", "delete"},
    ("networking.k8s.io", "ingresses"): APPLY | {"get", "list", "delete"},
    ("batch", "cronjobs"): APPLY | {"list", "delete"},
    ("autoscaling", "horizontalpodautoscalers"): APPLY | {"list", "delete"},
    # A disruption budget for web with more than one replica, pruned when it scales back to one.
    ("policy", "poddisruptionbudgets"): APPLY | {"list", "delete"},
}


def grants(rules: list[dict[str, list[str]]]) -> dict[tuple[str, str], frozenset[str]]:
    """A ClusterRole's (or a rules review's) resource rules as (group, resource) -> verbs."""
    found: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                found.setdefault((group, resource), set()).update(rule.get("verbs") or [])
    return {key: frozenset(verbs) for key, verbs in found.items()}


def excess(granted: dict[tuple[str, str], frozenset[str]]) -> list[str]:
    """Each granted right that USED does not list, as `verb group/resource`, sorted."""
    return sorted(f"{verb} {group or 'core'}/{resource}" for (group, resource), verbs in granted.items()
                  for verb in verbs - USED.get((group, resource), frozenset()))


def missing(granted: dict[tuple[str, str], frozenset[str]]) -> list[str]:
    """Each right USED lists that is not granted, as `verb group/resource`, sorted."""
    return sorted(f"{verb} {group or 'core'}/{resource}" for (group, resource), verbs in USED.items()
                  for verb in verbs - granted.get((group, resource), frozenset()))
