"""A plain FastAPI endpoint: no batching, one onnxruntime call per request (in FastAPI's thread pool).

Request `{"image": [[[...]]]}` (one 3×32×32 tensor), answer `{"logits": [...]}`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import uvicorn
from fastapi import Body, FastAPI

from common import arguments, onnx_session

args = arguments(__doc__)
session = onnx_session(args.package, args.threads)
app = FastAPI()


@app.get("/health")
def health() -> str:
    return "ok"


@app.post("/predict")
def predict(payload: dict[str, Any] = Body(...)) -> dict:
    x = np.asarray(payload["image"], dtype=np.float32)[None]
    return {"logits": session.run(["logits"], {"image": x})[0][0].tolist()}


if __name__ == "__main__":
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)
