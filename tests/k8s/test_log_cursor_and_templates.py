"""Pure pieces of the runtime: resuming a log by timestamps, and keeping a pod template a release does not change."""

from __future__ import annotations

from controller.runtime.kubernetes import manifests
from controller.runtime.kubernetes.logstream import LogCursor, timestamp_key
from controller.runtime.kubernetes.meta import RELEASE_LABEL
from controller.runtime.kubernetes.templates import (
    RESTARTED_AT, TEMPLATE_HASH, applicable, keep_autoscaled_replicas, keep_template,
)
from controller.spec import Autoscale
from tests.k8s import samples

LOG = [
    "2026-11-22T03:00:00.1Z first",
    "2026-11-22T03:00:00.1Z same instant",
    "2026-11-22T03:00:00.12Z later by 20 ms",
    "2026-11-22T03:00:01Z next second",
    "2026-11-22T03:00:01Z next second again",
]


def test_fractions_of_any_length_sort_by_time() -> None:
    assert timestamp_key("2026-11-22T03:00:00.1Z") > timestamp_key("2026-11-22T03:00:00.09Z")
    assert timestamp_key("2026-11-22T03:00:00.123456789Z") < timestamp_key("2026-11-22T03:00:01Z")


def test_a_reopened_log_skips_exactly_the_lines_already_relayed() -> None:
    for cut in range(len(LOG) + 1):
        cursor, relayed = LogCursor(), []
        relayed += [line for raw in LOG[:cut] if (line := cursor.accept(raw)) is not None]
        cursor.reopened()  # the stream dropped; the server sends the whole log again
        relayed += [line for raw in LOG if (line := cursor.accept(raw)) is not None]
        assert relayed == [raw.split(" ", 1)[1] for raw in LOG], f"cut after {cut} lines"


def test_lines_without_a_timestamp_pass_through() -> None:
    assert LogCursor().accept("no stamp here") == "no stamp here"


def web(release_version: int, **overrides) -> dict:
    release = samples.release(version=release_version, **overrides)
    return manifests.deployment(samples.settings(), release, "web")


def test_a_release_that_changes_nothing_pods_run_keeps_the_live_template() -> None:
    live = keep_template(web(4), None, restart=False)
    scaled = keep_template(web(5, formation={"web": 7}), live, restart=False)
    assert scaled["spec"]["template"] == live["spec"]["template"]
    assert scaled["spec"]["replicas"] == 7
    assert scaled["metadata"]["labels"][RELEASE_LABEL] == "v5"  # the Deployment itself says which release applied it


def test_new_config_or_slug_makes_a_new_template() -> None:
    live = keep_template(web(4), None, restart=False)
    for changed in (web(5, config={"A": "b"}), web(5, slug_key="apps/shop/builds/x/slug.tgz")):
        new = keep_template(changed, live, restart=False)
        assert new["spec"]["template"]["metadata"]["labels"][RELEASE_LABEL] == "v5"
        assert new["metadata"]["annotations"][TEMPLATE_HASH] != live["metadata"]["annotations"][TEMPLATE_HASH]


def test_a_restart_stamps_the_template_and_later_releases_keep_the_stamp() -> None:
    live = keep_template(web(4), None, restart=False)
    restarted = keep_template(web(5), live, restart=True)
    stamp = restarted["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    scaled = keep_template(web(6, formation={"web": 1}), restarted, restart=False)
    assert scaled["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == stamp


def test_under_an_autoscaler_a_release_keeps_the_live_replica_count_within_its_bounds() -> None:
    live = dict(web(4, formation={"web": 2}))
    live["spec"] = {**live["spec"], "replicas": 5}   # what the HorizontalPodAutoscaler set
    release = web(5, formation={"web": 2}, config={"A": "b"})
    assert keep_autoscaled_replicas(release, live, Autoscale(1, 6, 70))["spec"]["replicas"] == 5
    assert keep_autoscaled_replicas(release, live, Autoscale(1, 4, 70))["spec"]["replicas"] == 4
    assert keep_autoscaled_replicas(release, live, Autoscale(1, 6, 70, "worker"))["spec"]["replicas"] == 2
    assert keep_autoscaled_replicas(release, live, None)["spec"]["replicas"] == 2
    assert keep_autoscaled_replicas(release, None, Autoscale(1, 6, 70))["spec"]["replicas"] == 2


def test_a_live_object_reduced_to_what_is_applied() -> None:
    live = keep_template(web(4), None, restart=False)
    live["metadata"].update(uid="u", resourceVersion="9", generation=3, managedFields=[{}])
    live["status"] = {"replicas": 3}
    reduced = applicable(live)
    assert set(reduced) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(reduced["metadata"]) == {"name", "namespace", "labels", "annotations"}
