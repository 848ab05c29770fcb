"""The embedded local runtime: supervised child processes behind an HTTP router."""

from controller.runtime.local.runtime import LocalRuntime, installed_tool
from controller.runtime.local.supervisor import Timings

__all__ = ["LocalRuntime", "Timings", "installed_tool"]
