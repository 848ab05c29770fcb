#!/usr/bin/env python3
"""Push to serving: examples/python-hello pushed again with one changed line, until it answers.

Starts `teresa serve` (local runtime, bench/redeploy.py's Bench), pushes
examples/python-hello once (which warms the build cache), then --runs times
changes one line of app.py and pushes. For each push it records, from the
moment `git push` starts: when the new version first answers through the
router (polled every 10 ms), when the push returns, and the phases of the
push's `-----> Done in …` line. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import redeploy  # noqa: E402  (bench/redeploy.py)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "python-hello"
GOAL_SECONDS = 2.0
DONE = re.compile(r"-----> Done in ([\d.]+)s: (.*)")


@dataclass
class Run:
    serving: float  # push start -> the new version answers through the router
    returned: float  # push start -> `git push` exits
    phases: dict[str, float]
    output: str


def change_line(work: Path, version: int) -> None:
    app = work / "app.py"
    text = re.sub(r'os.environ.get\("GREETING", "[^"]*"\)', f'os.environ.get("GREETING", "Hello v{version}")',
                  app.read_text())
    app.write_text(text)


async def first_answer(port: int, wanted: str, stop: asyncio.Event) -> float | None:
    """When the router first answers with `wanted` in the body (monotonic time), polling until `stop`."""
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            try:
                async with session.get(f"http://{redeploy.LOOPBACK}:{port}/",
                                       headers={"Host": f"{redeploy.APP}.localhost"}) as response:
                    if wanted in await response.text():
                        return time.monotonic()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.01)
    return None


async def push_and_watch(bench: redeploy.Bench, version: int) -> Run:
    change_line(bench.work, version)
    bench.git("commit", "-q", "-am", f"version {version}")
    stop = asyncio.Event()
    started = time.monotonic()
    watcher = asyncio.create_task(first_answer(bench.ports["router"], f"Hello v{version} from", stop))
    status, output = await bench.push()
    returned = time.monotonic() - started
    if status != 0:
        raise SystemExit(f"the push of version {version} failed:\n{output}")
    try:
        answered = await asyncio.wait_for(watcher, 30)
    except TimeoutError:
        raise SystemExit(f"version {version} did not answer within 30 s of its push's end") from None
    assert answered is not None
    done = DONE.search(output)
    phases = {name: float(seconds.rstrip("s")) for name, seconds in
              (part.split() for part in done.group(2).split(", "))} if done else {}
    return Run(answered - started, returned, phases, output)


async def run(bench: redeploy.Bench, runs: int, show_output: bool) -> int:
    await asyncio.to_thread(bench.start)
    await asyncio.to_thread(bench.bootstrap)
    shutil.copytree(EXAMPLE, bench.work)
    bench.git("init", "-q", "-b", "main")
    change_line(bench.work, 1)
    bench.git("add", "-A")
    bench.git("commit", "-q", "-m", "version 1")
    status, output = await bench.push()
    if status != 0:
        raise SystemExit(f"the first push failed:\n{output}")
    results = []
    for version in range(2, runs + 2):
        result = await push_and_watch(bench, version)
        results.append(result)
        print(f"  push {version - 1}: serving after {result.serving:.2f}s, push returned after "
              f"{result.returned:.2f}s; " + ", ".join(f"{k} {v:.1f}s" for k, v in result.phases.items()), flush=True)
    if show_output:
        print(results[-1].output)
    serving = statistics.median(r.serving for r in results)
    print(f"python-hello, one changed line, warm build cache, median of {runs}:")
    print(f"  push start -> new version answers  {serving:6.2f} s   goal <= {GOAL_SECONDS:g} s  "
          f"{'ok' if serving <= GOAL_SECONDS else 'MISSED'}")
    print(f"  push start -> push returns         {statistics.median(r.returned for r in results):6.2f} s")
    for phase in results[0].phases:
        print(f"  {phase:<32} {statistics.median(r.phases.get(phase, 0.0) for r in results):6.2f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="pushes after the first; medians (5)")
    parser.add_argument("--quick", action="store_true", help="2 pushes after the first")
    parser.add_argument("--show-output", action="store_true", help="print the last push's output")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log, data)")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    return redeploy.with_bench("teresa-serve-bench-", args.keep,
                               lambda bench: redeploy.until_stopped(run(bench, runs, args.show_output), 600))

if __name__ == "__main__":
    sys.exit(main())
