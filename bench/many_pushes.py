#!/usr/bin/env python3
"""Many pushes: N pushes at once to N apps on one `teresa serve` (local runtime), all built and released.

Builds beyond TERESA_MAX_CONCURRENT_BUILDS wait in the build slot queue; every
push must succeed. Prints the wall time, how many pushes waited for a slot, and
the server's peak memory: its own RSS and the sampled RSS of its whole process
tree (slugbuilders and started apps included). Uses bench/push.py's servers and
helpers; see bench/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import push as bench  # noqa: E402  (bench/push.py)


def options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=50, help="concurrent pushes, to as many apps (50)")
    parser.add_argument("--size-mb", type=float, default=1, help="size of the pushed repository (1)")
    parser.add_argument("--quick", action="store_true", help="10 pushes")
    parser.add_argument("--teresa", help="the teresa command (default: the one next to this Python, or .venv)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is printed)")
    args = parser.parse_args(argv)
    if args.quick:
        args.pushes = 10
    return args


def run(args: argparse.Namespace, work: Path, processes: bench.Processes) -> int:
    teresa_bin = bench.find_teresa(args.teresa)
    key = work / "client_key"
    bench.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)])
    env = bench.git_env(bench.ssh_command(key, work / "known_hosts"))
    repo = work / "repo"
    bench.make_repository(repo, 50, args.size_mb, 7)
    teresa = bench.Teresa(work / "teresa", teresa_bin, key.with_suffix(".pub"), processes)
    urls = [teresa.create_app(f"many-{index}") for index in range(1, args.pushes + 1)]
    print(f"{args.pushes} concurrent pushes of {args.size_mb:g} MB to {args.pushes} apps "
          f"(teresa serve pid {teresa.process.pid}) ...", flush=True)
    started = time.monotonic()
    with bench.memory_peak(teresa.process.pid, interval=0.1) as peak:
        results = bench.push_all(repo, urls, env, processes)
    wall = time.monotonic() - started
    succeeded = sum(result.ok for result in results)
    queued = sum("Waiting for a build slot" in result.output for result in results)
    print(f"pushes succeeded                 {succeeded}/{args.pushes}   goal: all")
    print(f"wall time                        {wall:8.1f} s   (slowest push {max(r.seconds for r in results):.1f} s)")
    print(f"pushes that waited for a slot    {queued}")
    print(f"peak RSS, server process         {bench.mb(peak.server_hwm_kb):>8}   (VmHWM)")
    print(f"peak RSS, server anonymous       {bench.mb(peak.anon_kb):>8}   (RssAnon, sampled)")
    print(f"peak RSS, server process tree    {bench.mb(peak.tree_kb):>8}   (server + builds + new apps, sampled)")
    for index, result in enumerate(results, 1):
        if not result.ok:
            print(f"  many-{index} failed after {result.seconds:.1f}s:\n    "
                  + "\n    ".join(result.output.strip().splitlines()[-8:]))
    return 0 if succeeded == args.pushes else 1


def main(argv: Sequence[str] | None = None) -> None:
    args = options(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="teresa-bench-concurrent-"))
    processes = bench.Processes()
    status = 1
    try:
        status = run(args, work, processes)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the server.", file=sys.stderr)
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        processes.stop_all()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
