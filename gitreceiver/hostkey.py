"""The SSH host key: generated once and kept, so clients never see it change."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from core.config import ConfigError, Settings


def load_host_key(settings: Settings) -> asyncssh.SSHKey:
    configured = settings.ssh_host_key.strip()
    if configured:
        try:
            if "PRIVATE KEY" in configured:
                return asyncssh.import_private_key(configured)
            return asyncssh.read_private_key(configured)
        except (OSError, asyncssh.KeyImportError, ValueError):
            raise ConfigError("TERESA_SSH_HOST_KEY is neither a readable private key file nor a PEM private key; "
                              "point it at the host key file.") from None
    path = settings.data_dir / "ssh_host_ed25519_key"
    if path.exists():
        return asyncssh.read_private_key(str(path))
    return _generate(path)


def _generate(path: Path) -> asyncssh.SSHKey:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.export_private_key())
    os.replace(temporary, path)
    return key
