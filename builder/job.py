"""A build job and the slugbuilder's environment contract: one encoder, one decoder.

The runtimes (a local process, a Kubernetes pod) encode a `BuildRequest` with
`to_env`; `teresa-slugbuilder` decodes it with `from_env`. Storage settings
travel beside it (`StorageSettings.to_env`), never inside the request.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Mapping

SOURCE_KEY = "TERESA_SOURCE_KEY"
SLUG_KEY = "TERESA_SLUG_KEY"
CACHE_KEY = "TERESA_CACHE_KEY"
CONFIG = "TERESA_BUILD_CONFIG"       # the app's config vars, a JSON object of strings
TIMEOUT = "TERESA_BUILD_TIMEOUT"     # seconds
APP = "TERESA_APP"
BUILD_ID = "TERESA_BUILD_ID"
BUILDPACK_URL = "BUILDPACK_URL"
STACK_SETTINGS = "TERESA_STACK_"     # prefix of the stack's settings (its interpreters), passed to builds as they are
DEFAULT_TIMEOUT = 15 * 60
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class JobError(Exception):
    """The job's environment is not usable; the message is one sentence naming the fix."""


@dataclass(frozen=True)
class BuildRequest:
    app: str
    build_id: str
    source_key: str
    slug_key: str
    cache_key: str
    config: Mapping[str, str] = field(default_factory=dict, repr=False)
    buildpack_url: str = ""
    timeout_seconds: int = DEFAULT_TIMEOUT

    @property
    def effective_buildpack_url(self) -> str:
        return self.buildpack_url or self.config.get(BUILDPACK_URL, "")

    def config_json(self) -> str:
        return json.dumps(dict(self.config), sort_keys=True)

    def to_env(self, *, with_config: bool = True) -> dict[str, str]:
        """The job's environment; without config when it travels separately (a Kubernetes Secret)."""
        env = {APP: self.app, BUILD_ID: self.build_id, SOURCE_KEY: self.source_key, SLUG_KEY: self.slug_key,
               CACHE_KEY: self.cache_key, TIMEOUT: str(self.timeout_seconds)}
        if with_config:
            env[CONFIG] = self.config_json()
        if url := self.effective_buildpack_url:
            env[BUILDPACK_URL] = url
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "BuildRequest":
        missing = [name for name in (SOURCE_KEY, SLUG_KEY) if not env.get(name)]
        if missing:
            raise JobError(f"{' and '.join(missing)} must be set; the slugbuilder reads its job from the environment.")
        timeout = env.get(TIMEOUT, "").strip() or str(DEFAULT_TIMEOUT)
        if not timeout.isdigit() or int(timeout) <= 0:
            raise JobError(f"{TIMEOUT}={timeout[:20]!r} is not a number of seconds; set it like {DEFAULT_TIMEOUT}.")
        return cls(app=env.get(APP, ""), build_id=env.get(BUILD_ID, ""), source_key=env[SOURCE_KEY],
                   slug_key=env[SLUG_KEY], cache_key=env.get(CACHE_KEY, ""), config=_config_vars(env.get(CONFIG, "")),
                   buildpack_url=env.get(BUILDPACK_URL, "").strip(), timeout_seconds=int(timeout))


def _config_vars(raw: str) -> dict[str, str]:
    try:
        config = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        config = None
    if not isinstance(config, dict) or not all(isinstance(v, str) for v in config.values()):
        raise JobError(f"{CONFIG} is not a JSON object of strings; set it like {{\"NAME\": \"value\"}}.")
    bad = sorted(name for name in config if not ENV_NAME.fullmatch(name))
    if bad:
        raise JobError(f"Config var name {bad[0][:40]!r} is not valid; use letters, digits and underscores.")
    return config
