"""Runs one `SchedulerOutput` on the model: cache moves, one batched decode call for every
running sequence, the prefill chunks, then the next token of each sequence that has logits."""

from __future__ import annotations

import torch

from bushu.generate.sampling import sample
from bushu.generate.scheduler import SchedulerOutput
from bushu.generate.sequence import Sequence


class Runner:
    def __init__(self, model, cache, *, static: bool = False, graphs: bool = False, decode: str = "pytorch",
                 threads: int = 0, step_file: str | None = None, activations: str = "f32", buckets: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)) -> None:
        self.model = model
        self.cache = cache
        self.decode = model.decode
        if decode == "openvino":
            from bushu.generate.openvino_decode import OpenVinoDecode

            self.decode = OpenVinoDecode(model, cache, threads, step_file, activations)
        elif decode == "onnxruntime":
            from bushu.generate.ort_decode import OrtDecode

            self.decode = OrtDecode(model, cache, threads, step_file)
        elif static or graphs:
            from bushu.generate.static_decode import StaticDecode

            self.decode = StaticDecode(model, cache, buckets, graphs=graphs)

    def execute(self, out: SchedulerOutput) -> list[tuple[Sequence, int]]:
        self.cache.reserve(out.rows, out.length, out.source)
        for src, dst, length in out.moves:
            self.cache.move(src, dst, length)
        sampled: list[tuple[Sequence, int]] = []
        if out.decode:
            ids = torch.tensor([s.output[-1] for s in out.decode], dtype=torch.long, device=self.cache.device)
            lengths = torch.tensor([s.cache_len for s in out.decode], dtype=torch.long, device=self.cache.device)
            logits = self.decode(ids, lengths, self.cache).float().cpu()
            sampled += self._choose(out.decode, logits)
        if out.prefill:
            sampled += self._prefill(out.prefill)
        return sampled

    def _prefill(self, chunks: list[tuple[Sequence, int, int]]) -> list[tuple[Sequence, int]]:
        """Every prompt chunk of the step, in one forward where the model can; the first token of
        each sequence whose prompt is now whole."""
        device = self.cache.device
        pieces = [(torch.tensor(seq.prompt[start:end], dtype=torch.long, device=device), seq.slot, start)
                  for seq, start, end in chunks]
        if hasattr(self.decode, "prefill"):  # the step graph (OpenVINO, ONNX Runtime) takes prompt chunks too
            logits = torch.cat([self.decode.prefill(*piece, self.cache) for piece in pieces])
        elif hasattr(self.model, "prefill_many"):
            logits = self.model.prefill_many(pieces, self.cache)
        else:
            logits = torch.cat([self.model.prefill(*piece, self.cache) for piece in pieces])
        done = [i for i, (seq, _, end) in enumerate(chunks) if end == len(seq.prompt)]
        if not done:
            return []
        return self._choose([chunks[i][0] for i in done], logits[done].float().cpu())

    @staticmethod
    def _choose(seqs: list[Sequence], logits: torch.Tensor) -> list[tuple[Sequence, int]]:
        plain = [i for i, s in enumerate(seqs) if s.params.greedy and s.params.repetition_penalty == 1.0]
        chosen: dict[int, int] = {}
        if plain:  # one argmax for every greedy row
            chosen.update(zip(plain, logits[plain].argmax(-1).tolist()))
        for i, seq in enumerate(seqs):
            if i not in chosen:
                chosen[i] = sample(logits[i], seq.params, seq.generator, seq.prompt + seq.output)
        return [(seq, chosen[i]) for i, seq in enumerate(seqs)]
