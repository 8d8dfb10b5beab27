"""LitServe serving the package's ONNX model with onnxruntime: batches of up to 32, 5 ms timeout.

Request `{"image": [[[...]]]}` (one 3×32×32 tensor), answer `{"logits": [...]}`.
"""

from __future__ import annotations

import litserve as ls
import numpy as np

from common import arguments, onnx_session


class OnnxAPI(ls.LitAPI):
    def __init__(self, package, threads: int) -> None:
        super().__init__(max_batch_size=32, batch_timeout=0.005)
        self.package, self.threads = package, threads

    def setup(self, device: str) -> None:
        self.session = onnx_session(self.package, self.threads)

    def decode_request(self, request: dict) -> np.ndarray:
        return np.asarray(request["image"], dtype=np.float32)

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"image": x})[0]

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict:
        return {"logits": output.tolist()}


if __name__ == "__main__":
    args = arguments(__doc__)
    server = ls.LitServer(OnnxAPI(args.package, args.threads), accelerator="cpu", workers_per_device=1)
    server.run(host=args.host, port=args.port, log_level="warning", generate_client_file=False)
