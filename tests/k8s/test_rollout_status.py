"""Reading a Deployment's status like `kubectl rollout status`: nothing counts before the controller observed
the current generation; a ReplicaFailure condition is reported with its message."""

from __future__ import annotations

from controller.runtime.kubernetes.rollout import progress

DEADLINE_EXCEEDED = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                     "message": 'ReplicaSet "web-5d8f" has timed out progressing.'}
REPLICA_FAILURE = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                   "message": 'pods "web-5d8f-x" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=0, '
                              'limited: pods=0'}


def deployment(generation: int, observed: int, replicas: int = 2, **status: object) -> dict:
    return {"metadata": {"name": "web", "generation": generation}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": replicas,
                       "availableReplicas": replicas, "readyReplicas": replicas, **status}}


def test_the_previous_generations_status_counts_for_nothing() -> None:
    # The status of generation 1 (complete, or stalled by an earlier deploy) says nothing about generation 2.
    stale = progress(deployment(2, 1, conditions=[DEADLINE_EXCEEDED, REPLICA_FAILURE]))
    assert (stale.observed, stale.complete, stale.deadline_exceeded, stale.replica_failure) == (False, False, False, "")


def test_an_observed_generation_is_judged() -> None:
    assert progress(deployment(2, 2)).complete
    assert progress(deployment(2, 2, conditions=[DEADLINE_EXCEEDED])).deadline_exceeded
    assert progress(deployment(2, 3, conditions=[REPLICA_FAILURE])).replica_failure == REPLICA_FAILURE["message"]
    assert progress(deployment(2, 2, conditions=[{**REPLICA_FAILURE, "status": "False"}])).replica_failure == ""
