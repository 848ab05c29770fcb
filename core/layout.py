"""Where an app's objects live in storage: one definition of the key layout.

    apps/<app>/builds/<build-id>/source.tgz   the pushed tree
    apps/<app>/builds/<build-id>/slug.tgz     the built slug
    apps/<app>/builds/<build-id>/Procfile     the slug's final Procfile, read without unpacking it
    apps/<app>/builds/<build-id>/build.log    the build's output
    apps/<app>/cache/cache.tgz                the build cache, shared by the app's builds
    apps/<app>/repo/packs/pack-<sha>.pack     the app's git objects, one pack per accepted push (+ .idx)
    apps/<app>/repo/refs.json                 the app's git refs and the packs that hold their objects
"""

from __future__ import annotations

from dataclasses import dataclass


def app_prefix(app: str) -> str:
    """Every object of the app starts with this."""
    return f"apps/{app}/"


@dataclass(frozen=True)
class BuildKeys:
    app: str
    build_id: str

    @property
    def prefix(self) -> str:
        return f"{app_prefix(self.app)}builds/{self.build_id}"

    @property
    def source(self) -> str:
        return f"{self.prefix}/source.tgz"

    @property
    def slug(self) -> str:
        return f"{self.prefix}/slug.tgz"

    @property
    def procfile(self) -> str:
        return f"{self.prefix}/Procfile"

    @property
    def log(self) -> str:
        return f"{self.prefix}/build.log"

    @property
    def cache(self) -> str:
        return f"{app_prefix(self.app)}cache/cache.tgz"


@dataclass(frozen=True)
class RepoKeys:
    """The authoritative copy of an app's git repository (each replica keeps a cache of it)."""

    app: str

    @property
    def prefix(self) -> str:
        return f"{app_prefix(self.app)}repo/"

    @property
    def manifest(self) -> str:
        return f"{self.prefix}refs.json"

    def pack(self, name: str) -> str:
        """`name` is a pack's file name: pack-<sha>.pack or pack-<sha>.idx."""
        return f"{self.prefix}packs/{name}"


def procfile_key(slug_key: str) -> str:
    """The Procfile stored beside a slug (slug keys of every layout end in `/slug.tgz`)."""
    return slug_key.rsplit("/", 1)[0] + "/Procfile"
