"""The grammar of process types: one for the Procfile, the command line and Kubernetes object names.

It imports nothing of the command table, so the slugbuilder uses it without the server's dependencies.
Underscores are Heroku's too; Kubernetes names spell them as dashes (`kubernetes_name`).
"""

from __future__ import annotations

import re

PROCESS_TYPE = re.compile(r"^[a-z]([a-z0-9_-]{0,28}[a-z0-9])?$")
PROCESS_TYPE_RULE = ("use 1 to 30 lowercase letters, digits, dashes and underscores, starting with a letter and "
                     "ending with a letter or digit (like web or mail_worker)")


def kubernetes_name(process_type: str) -> str:
    """How a process type names Kubernetes objects (a DNS label): `mail_worker` -> `mail-worker`."""
    return process_type.replace("_", "-")
