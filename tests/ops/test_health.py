"""The health listener over real HTTP on a loopback port."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

import sqlalchemy as sa

from core import metrics
from core.health import (
    UNAUTHORIZED, bound_port, database_check, health_app, metrics_token, start_health_server, storage_check,
)


TOKEN = "metrics-token-for-tests-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def health(checks=None, **options):
    return health_app(checks, metrics_token=TOKEN, **options)


async def _get(app, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    runner = await start_health_server(app, ("127.0.0.1", 0))
    try:
        url = f"http://127.0.0.1:{bound_port(runner)}{path}"
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
            return response.status, await response.text(), response.headers["Content-Type"]
    finally:
        await runner.cleanup()


def get(app, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    return asyncio.run(_get(app, path, headers))


async def ok() -> None:
    return None


async def refused() -> None:
    raise ConnectionRefusedError("connect to 127.0.0.1:3306 refused\nsecond line never shown")


async def hangs() -> None:
    await asyncio.Event().wait()


def test_healthz_answers_ok_with_no_checks() -> None:
    status, body, _ = get(health(), "/healthz")
    assert (status, body) == (200, "ok\n")


def test_healthz_ignores_failing_readiness_checks() -> None:
    status, _, _ = get(health({"database": refused}), "/healthz")
    assert status == 200


def test_readyz_is_200_when_every_check_passes() -> None:
    status, body, _ = get(health({"database": ok, "storage": ok, "runtime": ok}), "/readyz")
    assert (status, body) == (200, "ok\n")


def test_readyz_names_each_failing_check_with_a_one_line_reason() -> None:
    app = health({"database": refused, "storage": ok, "runtime": hangs}, timeout=0.2)
    status, body, _ = get(app, "/readyz")
    assert status == 503
    assert body.splitlines() == [
        "database: ConnectionRefusedError: connect to 127.0.0.1:3306 refused",
        "runtime: no answer within 0.2s",
    ]


def test_readyz_runs_checks_concurrently() -> None:
    started: list[str] = []
    def make(name: str, barrier: asyncio.Barrier):
        async def check() -> None:
            started.append(name)
            await barrier.wait()  # passes only if the other check runs at the same time
        return check

    async def scenario() -> tuple[int, str, str]:
        barrier = asyncio.Barrier(2)
        app = health({"a": make("a", barrier), "b": make("b", barrier)}, timeout=2)
        return await _get(app, "/readyz")

    status, _, _ = asyncio.run(scenario())
    assert status == 200
    assert sorted(started) == ["a", "b"]


def test_metrics_exposes_teresa_series_in_prometheus_text_format() -> None:
    metrics.pushes_total.labels(outcome="success").inc()
    metrics.builds_total.labels(app="shop", outcome="failure").inc()
    metrics.releases_total.labels(app="shop", outcome="success").inc()
    metrics.build_duration_seconds.observe(42)
    metrics.rollout_duration_seconds.observe(7)
    metrics.ssh_sessions_total.inc()
    metrics.ssh_sessions_active.inc()
    metrics.auth_failures_total.labels(method="publickey").inc()

    status, body, content_type = get(health(), "/metrics", BEARER)
    assert status == 200
    assert content_type.startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(body)}
    assert set(families) >= {
        "teresa_pushes", "teresa_builds", "teresa_releases", "teresa_build_duration_seconds",
        "teresa_rollout_duration_seconds", "teresa_ssh_sessions", "teresa_ssh_sessions_active",
        "teresa_auth_failures",
    }
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("teresa_pushes_total", (("outcome", "success"),))] >= 1
    assert samples[("teresa_auth_failures_total", (("method", "publickey"),))] >= 1
    assert samples[("teresa_build_duration_seconds_count", ())] >= 1
    assert not any(name.startswith("process_") or name.startswith("python_") for name in families)


def test_metrics_answer_only_with_the_bearer_token_and_probes_need_none() -> None:
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        status, body, _ = get(health({"database": ok}), "/metrics", headers)
        assert (status, body) == (401, UNAUTHORIZED), headers
    assert get(health({"database": ok}), "/metrics", BEARER)[0] == 200
    for probe in ("/healthz", "/readyz"):
        assert get(health({"database": ok}), probe)[:2] == (200, "ok\n")


def test_the_metrics_token_is_the_setting_or_one_made_once_in_the_data_directory(tmp_path) -> None:
    data = tmp_path / "data"
    made = metrics_token(data)
    assert len(made) >= 32 and metrics_token(data) == made  # kept: a scraper configured once keeps working
    assert (data / "metrics-token").stat().st_mode & 0o777 == 0o600
    assert list(data.iterdir()) == [data / "metrics-token"]
    assert metrics_token(data, "set-by-the-operator-0123") == "set-by-the-operator-0123"


def test_database_and_storage_checks_report_what_is_unreachable(tmp_path) -> None:
    class Storage:
        def __init__(self, error: Exception | None) -> None:
            self.error = error

        def exists(self, key: str) -> bool:
            if self.error:
                raise self.error
            return False

    good_db = sa.create_engine(f"sqlite:///{tmp_path / 'ok.sqlite'}")
    refused_db = sa.create_engine("mysql+pymysql://root@127.0.0.1:1/teresa?connect_timeout=2")
    app = health({
        "database": database_check(good_db),
        "storage": storage_check(Storage(None)),
    })
    assert get(app, "/readyz")[0] == 200

    app = health({
        "database": database_check(refused_db),
        "storage": storage_check(Storage(PermissionError("bucket teresa: access denied"))),
    })
    status, body, _ = get(app, "/readyz")
    assert status == 503
    database, storage = body.splitlines()
    assert database.startswith("database: OperationalError: ") and "Connection refused" in database
    assert "Background on this error" not in body  # one line per failing check
    assert storage == "storage: PermissionError: bucket teresa: access denied"
