"""The engine: a scheduler and a runner stepping in a loop on a thread of their own, and the
asyncio side that feeds it requests and streams their tokens back.

`EngineCore.step()` is one iteration (schedule → run → sample → update); sequences join and
leave between steps. `GenerationEngine` runs `step()` on its thread whenever there is work,
so the event loop only parses requests and writes tokens; a request's tokens reach its
`asyncio.Queue` through one `call_soon_threadsafe` per step. A client that goes away cancels
its sequence, which the scheduler frees at the next step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from bushu.errors import BushuError, InvalidInput, Overloaded
from bushu.generate.config import EngineSettings, GenerationConfig, SamplingParams
from bushu.generate.scheduler import Scheduler
from bushu.generate.sequence import Event, GenerationObserver, Sequence
from bushu.generate.text import Detokenizer, TextCodec

log = logging.getLogger("bushu.generate")
#: While gathering a burst: the pause without a new request that ends the wait.
_GATHER_GAP_S = 0.002


class EngineCore:
    def __init__(self, model: Any, cache: Any, codec: TextCodec, config: GenerationConfig,
                 settings: EngineSettings, observer: GenerationObserver | None = None) -> None:
        from bushu.generate.runner import Runner  # torch: only once a model is opened

        self.model, self.codec, self.config, self.settings = model, codec, config, settings
        self.observer = observer or GenerationObserver()
        self.scheduler = Scheduler(settings, encoder_decoder=model.is_encoder_decoder)
        self.runner = Runner(model, cache, static=settings.static_cache, graphs=settings.cuda_graphs,
                             decode=settings.decode, threads=settings.threads, step_file=settings.step_file,
                             activations=settings.step_activations)
        self.eos = set(config.eos_token_ids)

    def check(self, prompt: list[int], params: SamplingParams) -> None:
        """Refuse what can never run, naming the field: too long for the model or the cache."""
        if not prompt:
            raise InvalidInput("'prompt' is empty")
        if any(not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < self.model.vocab_size for t in prompt):
            raise InvalidInput(f"'prompt' token ids must be integers in [0, {self.model.vocab_size})")
        config = self.config
        if self.model.is_encoder_decoder:
            if config.max_source_tokens and len(prompt) > config.max_source_tokens:
                raise InvalidInput(f"'prompt' has {len(prompt)} tokens; the model reads {config.max_source_tokens} at most")
            if params.max_new_tokens + 1 > config.context:
                raise InvalidInput(f"'max_tokens' {params.max_new_tokens} is past the limit of {config.context - 1}")
        else:
            if len(prompt) >= config.context:
                raise InvalidInput(f"'prompt' has {len(prompt)} tokens; the context holds {config.context}, "
                                   "with room for at least one new token")
            room = config.context - len(prompt)
            if params.max_new_tokens > room:
                raise InvalidInput(f"'max_tokens' {params.max_new_tokens} is past the limit: the prompt's "
                                   f"{len(prompt)} tokens leave {room} of the {config.context}-token context")
        need = self.scheduler.need(Sequence(prompt, params))
        if need > self.settings.max_tokens_in_flight:
            raise InvalidInput(f"'max_tokens': prompt and new tokens ({need}) exceed the server's "
                               f"--max-tokens-in-flight of {self.settings.max_tokens_in_flight}")

    def room(self, prompt: list[int]) -> int:
        """New tokens the context leaves after `prompt`."""
        if self.model.is_encoder_decoder:
            return self.config.context - 1
        return self.config.context - len(prompt)

    def add(self, seq: Sequence) -> None:
        self.check(seq.prompt, seq.params)
        from bushu.generate.sampling import generator_for

        seq.generator = generator_for(seq.params)
        seq.detokenizer = Detokenizer(self.codec, seq.params.stop)
        self.scheduler.add(seq)

    def step(self) -> list[tuple[Sequence, Event]]:
        """One iteration; the events it produced, per sequence."""
        out = self.scheduler.schedule()
        self.observer.load(len(self.scheduler.running), len(self.scheduler.waiting))
        if out.empty:
            self.runner.cache.reserve(out.rows, out.length, out.source)
            for src, dst, length in out.moves:
                self.runner.cache.move(src, dst, length)
            return []
        sampled = self.runner.execute(out)
        self.scheduler.update(out)
        now = time.perf_counter()
        events = []
        for seq, token in sampled:
            if seq.cancelled:
                continue
            events.append((seq, self._advance(seq, token, now)))
            if seq.finished:
                self.scheduler.finish(seq)
        self.observer.tokens(len(sampled))
        return events

    def _advance(self, seq: Sequence, token: int, now: float) -> Event:
        if seq.first_token_at is None:
            seq.first_token_at = now
            self.observer.first_token(now - seq.arrived)
        else:
            self.observer.inter_token(now - (seq.last_token_at or now))
        seq.last_token_at = now
        eos = token in self.eos and not seq.params.ignore_eos
        if not eos:
            seq.output.append(token)
            if seq.detokenizer.add(seq.output):
                seq.finish_reason = "stop"
        else:
            seq.finish_reason = "stop"
        if seq.finish_reason is None and len(seq.output) >= seq.params.max_new_tokens:
            seq.finish_reason = "length"
        return Event(None if eos else token, seq.detokenizer.flush(seq.finished), seq.finish_reason,
                     len(seq.prompt), len(seq.output))

    def run_to_completion(self, seqs: list[Sequence]) -> list[Sequence]:
        """Generate for `seqs` together on this thread (verification, the CLI): every sequence
        goes through the same scheduler, cache and runner as served ones."""
        for seq in seqs:
            self.add(seq)
        while self.scheduler.has_work:
            for seq, event in self.step():
                seq.sink(event)
        return seqs


class GenerationEngine:
    """`EngineCore` on its own thread, fed from the event loop; what the server holds per model."""

    def __init__(self, core: EngineCore, *, name: str = "") -> None:
        self.core = core
        self.name = name
        self._inbox: list[Sequence] = []
        self._wake = threading.Condition()
        self._closing = False
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._loop, name=f"bushu-generate-{name}", daemon=True)
        self._thread.start()

    @property
    def config(self) -> GenerationConfig:
        return self.core.config

    @property
    def codec(self) -> TextCodec:
        return self.core.codec

    def running(self) -> int:
        return len(self.core.scheduler.running) + len(self.core.scheduler.prefilling)

    def waiting(self) -> int:
        return len(self.core.scheduler.waiting) + len(self._inbox)

    async def infer(self, *args: Any, **kwargs: Any) -> Any:
        raise InvalidInput(f"model {self.name!r} generates text: use /v2/models/{self.name}/generate or /v1/completions")

    async def stream(self, prompt: list[int], params: SamplingParams) -> AsyncIterator[Event]:
        """The events of one request, as they come; leaving the loop early cancels it."""
        if self._closing:
            raise Overloaded(f"model {self.name!r} is shutting down")
        self.core.check(prompt, params)
        if self.waiting() >= self.core.settings.max_waiting:
            raise Overloaded(f"{self.waiting()} requests already wait for the cache of {self.name!r}")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | BushuError] = asyncio.Queue()
        seq = Sequence(prompt, params, sink=lambda event: loop.call_soon_threadsafe(queue.put_nowait, event))
        self._active += 1
        self._idle.clear()
        with self._wake:
            self._inbox.append(seq)
            self._wake.notify()
        try:
            while True:
                event = await queue.get()
                if isinstance(event, BushuError):
                    raise event
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            seq.cancelled = seq.finish_reason is None
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def generate(self, prompt: list[int], params: SamplingParams) -> tuple[str, list[int], Event]:
        """The whole answer: its text, its tokens and the last event (finish reason, usage)."""
        text, tokens, last = [], [], None
        async for event in self.stream(prompt, params):
            text.append(event.text)
            if event.token is not None:
                tokens.append(event.token)
            last = event
        assert last is not None
        return "".join(text), tokens, last

    def _loop(self) -> None:
        core = self.core
        if core.settings.threads:
            import torch

            torch.set_num_threads(core.settings.threads)
        while True:
            with self._wake:
                while not self._inbox and not core.scheduler.has_work and not self._closing:
                    self._wake.wait()
                if self._closing and not self._inbox and not core.scheduler.has_work:
                    return
                if not core.scheduler.has_work:
                    self._gather()
                arrived, self._inbox = self._inbox, []
            for seq in arrived:
                try:
                    core.add(seq)
                except BushuError as exc:
                    seq.sink(exc)
            try:
                for seq, event in core.step():
                    seq.sink(event)
            except Exception as exc:  # the model failed: every sequence hears why, the engine goes on
                log.exception("generation step failed")
                error = exc if isinstance(exc, BushuError) else BushuError(f"generation failed: {exc}")
                for seq in (*core.scheduler.running, *core.scheduler.prefilling):
                    seq.sink(error)
                    seq.cancelled = True

    def _gather(self) -> None:
        """Idle, with requests in: wait (holding `_wake`'s lock between waits) while others keep
        arriving, up to `gather_ms`, so a burst prefills in one step and decodes in step."""
        deadline = time.monotonic() + self.core.settings.gather_ms / 1000
        count = len(self._inbox)
        while not self._closing and (left := deadline - time.monotonic()) > 0:
            self._wake.wait(min(_GATHER_GAP_S, left))
            if len(self._inbox) == count:
                return
            count = len(self._inbox)

    async def drain(self) -> None:
        """Wait until every accepted request has been answered."""
        await self._idle.wait()

    async def close(self) -> None:
        """Finish every accepted request, then stop the thread."""
        await self.drain()
        with self._wake:
            self._closing = True
            self._wake.notify()
        await asyncio.to_thread(self._thread.join)
