"""A server's memory across many reloads: does each repository reload leave the process larger?

    python benchmarks/reload_memory.py [--reloads 30] [--requests 100] [--packages DIR ...]

A real `bushu serve` holds the packages (default: the soak's four, built into out/soak as
`benchmarks/soak.py` builds them). After a warm-up of traffic, each model in turn is reloaded
through the repository API, followed by `--requests` requests of the soak's mixed workload (good
and bad ones); the server's RSS is read after each. Prints the RSS after every reload and the
growth from the reload a third of the way in (warm-up: arenas and first plans settle) to the end;
exit status 1 if that growth is 5% or more (issue 11's goal for the soak). Talks only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from bushu.bench.process import bushu_serve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import build_packages, rss_kib, workload  # noqa: E402  (a sibling script)

console = Console(width=150)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reloads", type=int, default=30)
    parser.add_argument("--requests", type=int, default=100, help="requests between two reloads")
    parser.add_argument("--packages", type=Path, nargs="*", help="the packages to serve (default: the soak's four)")
    parser.add_argument("--workdir", type=Path, default=Path("out/soak"))
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `bushu serve` argument")
    args = parser.parse_args()

    import httpx

    packages = args.packages or build_packages(args.workdir)
    with bushu_serve(packages, "--log-level", "warning", *args.serve_arg) as server:
        assert server.url is not None and server.url.startswith("http://127.0.0.1:")
        pool = workload(server.url, np.random.default_rng(0))
        names = sorted({r.model for r in pool})
        order = np.random.default_rng(1).permutation(len(pool))
        sent = 0
        with httpx.Client(base_url=server.url, timeout=120) as client:
            def traffic(count: int) -> None:
                nonlocal sent
                for _ in range(count):
                    request = pool[order[sent % len(pool)]]
                    sent += 1
                    status = client.post(request.path, content=request.body, headers=request.headers).status_code
                    if status >= 500 and status not in (503, 504):
                        raise SystemExit(f"{request.kind} {request.path} answered {status}")

            traffic(4 * args.requests)
            rss = [rss_kib(server.pid)]
            started = time.monotonic()
            for i in range(args.reloads):
                name = names[i % len(names)]
                status = client.post(f"/v2/repository/models/{name}/load").status_code
                if status != 200:
                    raise SystemExit(f"reloading {name} answered {status}")
                traffic(args.requests)
                rss.append(rss_kib(server.pid))
    warm = len(rss) // 3
    growth = (rss[-1] - rss[warm]) / rss[warm]
    console.print(f"{len(packages)} models ({', '.join(names)}); {args.reloads} reloads in turn, {args.requests} "
                  f"mixed requests after each, {time.monotonic() - started:.0f} s", highlight=False)
    console.print("RSS (MiB) before the first reload, then after each: "
                  + " ".join(f"{kib / 1024:.0f}" for kib in rss), highlight=False)
    console.print(f"RSS after {warm} reloads (warm) {rss[warm] / 1024:.0f} MiB → after {args.reloads} "
                  f"{rss[-1] / 1024:.0f} MiB: {growth:+.1%} ({'ok' if growth < 0.05 else 'NOT flat'}, goal < 5%); "
                  f"from the start {(rss[-1] - rss[0]) / rss[0]:+.1%}", highlight=False)
    return 0 if growth < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
