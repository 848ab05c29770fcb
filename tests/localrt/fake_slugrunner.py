"""Stand-in for teresa-slugrunner while builder/slugrunner.py is not installed.

Same contract: `start TYPE`, `exec -- CMD...`, `fetch`, with TERESA_APP_DIR and,
for fetch, the slug read from the descriptor TERESA_SLUG_URL (fd:N) names.
"""

import os
import sys
import tarfile
from pathlib import Path


def procfile_command(app_dir: Path, process_type: str) -> str:
    for line in (app_dir / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == process_type:
            return command.strip()
    sys.exit(f"no process type {process_type} in the Procfile")


def main(argv: list[str]) -> None:
    app_dir = Path(os.environ.get("TERESA_APP_DIR", "/app"))
    if argv[0] == "fetch":
        with tarfile.open(fileobj=os.fdopen(int(os.environ["TERESA_SLUG_URL"][3:]), "rb"), mode="r|gz") as tar:
            tar.extractall(app_dir, filter="data")
        return
    os.chdir(app_dir)
    if argv[0] == "start":
        os.execvp("bash", ["bash", "-c", procfile_command(app_dir, argv[1])])
    if argv[0] == "exec":
        command = argv[argv.index("--") + 1:]
        os.execvp(command[0], command)
    sys.exit(f"unknown command {argv[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])
