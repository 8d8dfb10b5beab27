"""bushu itself with the infer route served by Starlette's router instead of the raw-ASGI fast
path (`create_app(..., fast_infer=False)`): the baseline that measures what the fast path saves.
Same uvicorn settings and batching as `bushu serve --max-batch-size 32 --max-queue-delay-ms 5`."""

from __future__ import annotations

from pathlib import Path

import uvicorn

from bushu.serve.app import create_app
from bushu.serve.settings import ServeSettings
from common import arguments

if __name__ == "__main__":
    args = arguments(__doc__)
    settings = ServeSettings(max_batch_size=32, max_queue_delay_ms=5, threads=args.threads)
    uvicorn.run(create_app([Path(args.package)], settings, fast_infer=False), host=args.host, port=args.port,
                loop="uvloop", http="httptools", log_level="warning", access_log=False, backlog=4096)
