"""A build job and the slugbuilder's environment contract: one encoder, one decoder.

The server knows a build by its storage keys (`BuildRequest`); the build itself
never does. A runtime turns the keys into `Grants` — URLs that reach the
build's own objects only (presigned S3 URLs, `file:` paths, or `fd:N`, a file
the runtime opened for it) — and encodes both with `to_env`;
`teresa-slugbuilder` decodes them with `BuildJob.from_env`. No storage setting
or credential is part of the contract.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Mapping

from core.layout import procfile_key
from core.storage import Storage

SOURCE_URL = "TERESA_SOURCE_URL"                  # GET: the source tarball
SLUG_UPLOAD_URL = "TERESA_SLUG_UPLOAD_URL"        # PUT: the slug
PROCFILE_UPLOAD_URL = "TERESA_PROCFILE_UPLOAD_URL"  # PUT: the slug's final Procfile
CACHE_URL = "TERESA_CACHE_URL"                    # GET: the build cache, when there is one
CACHE_UPLOAD_URL = "TERESA_CACHE_UPLOAD_URL"      # PUT: the build cache
GRANT_MARGIN = 5 * 60                             # grants outlive the build's timeout by this much
CONFIG = "TERESA_BUILD_CONFIG"       # the app's config vars, a JSON object of strings
TIMEOUT = "TERESA_BUILD_TIMEOUT"     # seconds
APP = "TERESA_APP"
BUILD_ID = "TERESA_BUILD_ID"
BUILDPACK_URL = "BUILDPACK_URL"
STACK_SETTINGS = "TERESA_STACK_"     # prefix of the stack's settings (its interpreters), passed to builds as they are
DEFAULT_TIMEOUT = 15 * 60
TIMED_OUT = 124                      # the slugbuilder's exit status when its own timer stopped it (as timeout(1))
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

    def grants(self, storage: Storage, *, cache_exists: bool) -> "Grants":
        """URLs for this build's own objects, valid for its timeout (plus a margin)."""
        seconds = self.timeout_seconds + GRANT_MARGIN
        cache = self.cache_key
        return Grants(source=storage.grant(self.source_key, write=False, seconds=seconds),
                      slug=storage.grant(self.slug_key, write=True, seconds=seconds),
                      procfile=storage.grant(procfile_key(self.slug_key), write=True, seconds=seconds),
                      cache=storage.grant(cache, write=False, seconds=seconds) if cache and cache_exists else "",
                      cache_upload=storage.grant(cache, write=True, seconds=seconds) if cache else "")

    def to_env(self, grants: "Grants", *, with_config: bool = True) -> dict[str, str]:
        """The job's environment; without config when it travels separately (a Kubernetes Secret)."""
        env = {APP: self.app, BUILD_ID: self.build_id, TIMEOUT: str(self.timeout_seconds), **grants.to_env()}
        if with_config:
            env[CONFIG] = self.config_json()
        if url := self.effective_buildpack_url:
            env[BUILDPACK_URL] = url
        return env


@dataclass(frozen=True)
class Grants:
    """Where one build reads and writes its objects: URLs, each reaching one object only."""
    source: str
    slug: str
    procfile: str
    cache: str = ""          # "" when the app has no cache yet
    cache_upload: str = ""   # "" when the cache is not kept

    def to_env(self) -> dict[str, str]:
        env = {SOURCE_URL: self.source, SLUG_UPLOAD_URL: self.slug, PROCFILE_UPLOAD_URL: self.procfile}
        env.update({name: url for name, url in ((CACHE_URL, self.cache), (CACHE_UPLOAD_URL, self.cache_upload)) if url})
        return env


@dataclass(frozen=True)
class BuildJob:
    """What the slugbuilder knows of its build: grants, config vars, buildpack, timeout."""
    grants: Grants
    config: Mapping[str, str] = field(default_factory=dict, repr=False)
    buildpack_url: str = ""
    timeout_seconds: int = DEFAULT_TIMEOUT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "BuildJob":
        missing = [name for name in (SOURCE_URL, SLUG_UPLOAD_URL, PROCFILE_UPLOAD_URL) if not env.get(name)]
        if missing:
            raise JobError(f"{', '.join(missing)} must be set; the slugbuilder reads its job from the environment.")
        timeout = env.get(TIMEOUT, "").strip() or str(DEFAULT_TIMEOUT)
        if not timeout.isdigit() or int(timeout) <= 0:
            raise JobError(f"{TIMEOUT}={timeout[:20]!r} is not a number of seconds; set it like {DEFAULT_TIMEOUT}.")
        grants = Grants(source=env[SOURCE_URL], slug=env[SLUG_UPLOAD_URL], procfile=env[PROCFILE_UPLOAD_URL],
                        cache=env.get(CACHE_URL, ""), cache_upload=env.get(CACHE_UPLOAD_URL, ""))
        return cls(grants=grants, config=_config_vars(env.get(CONFIG, "")),
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
