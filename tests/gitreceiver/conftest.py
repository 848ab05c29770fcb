"""What the push tests push."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.teresa import Deploy  # noqa: F401  (the tests' type)

BUILDPACKS = Path(__file__).resolve().parents[1] / "builder" / "buildpacks"
WEB_APP = {"Procfile": "web: python3 -m http.server --bind 127.0.0.1 \"$PORT\"\n", "index.html": "version one\n"}
# A worker that survives its rollout (the stability window), then crash-loops: exits at once on every restart.
LATE_CRASHING_WORKER = "worker: sh -c 'if [ -e .crashed ]; then exit 3; fi; touch .crashed; sleep 8; exit 3'\n"
