"""The engine without HTTP: exact greedy tokens, seeded sampling, chunked prefill, the memory bound."""

import pytest
import torch

from bushu.errors import InvalidInput
from bushu.generate.config import EngineSettings, SamplingParams, parse_params
from bushu.generate.package import open_core
from bushu.generate.sequence import Sequence
from bushu.package import verify_package

TEXTS = ["the cat", "a long time ago in a land far away there", "hello", "we went to the market and bought"]


def core_for(package, variant=None, **settings):
    return open_core(package, verify_package(package), EngineSettings(**settings), variant=variant)


@pytest.mark.parametrize("kind, variant", [("gpt2", "pytorch-fp32"), ("t5", None)])
def test_greedy_tokens_equal_transformers_generate(kind, variant, request):
    package = request.getfixturevalue(f"{kind}_package")
    source = request.getfixturevalue(f"{kind}_source")
    core = core_for(package, variant)
    prompts = [core.codec.encode(t) for t in TEXTS]
    seqs = core.run_to_completion([Sequence(p, SamplingParams(max_new_tokens=10)) for p in prompts])
    eos = core.config.eos_token_ids
    for prompt, seq in zip(prompts, seqs):
        out = source.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                              max_new_tokens=10, do_sample=False, pad_token_id=eos[0])[0].tolist()
        expected = [t for t in (out[1:] if kind == "t5" else out[len(prompt):]) if t not in eos]
        assert seq.output == expected and len(expected) > 0


def test_sampling_with_a_seed_is_reproducible_and_the_seed_matters(gpt2_package):
    core = core_for(gpt2_package, "pytorch-fp32")
    prompt = core.codec.encode(TEXTS[0])

    def draw(seed):
        params = parse_params({"temperature": 3.0, "top_k": 50, "top_p": 0.95, "seed": seed, "max_tokens": 16,
                               "ignore_eos": True}, core.config)
        return core.run_to_completion([Sequence(prompt, params)])[0].output

    first = draw(7)
    assert draw(7) == first
    assert draw(8) != first
    assert len(set(first)) > 2  # it samples: a greedy run of this model repeats one or two tokens


def test_a_long_prompt_is_prefilled_in_chunks_without_stalling_a_running_sequence(gpt2_package):
    core = core_for(gpt2_package, "pytorch-fp32", prefill_chunk=16)
    params = SamplingParams(max_new_tokens=40, ignore_eos=True)
    running = Sequence(core.codec.encode("the cat"), params)
    core.add(running)
    core.step()
    assert running.output  # prefilled and first token out
    long = Sequence(list(range(1, 101)), SamplingParams(max_new_tokens=4, ignore_eos=True))
    core.add(long)
    for step in range(7):  # 100 prompt tokens in chunks of 16: 7 steps
        before = len(running.output)
        core.step()
        assert len(running.output) == before + 1, f"the running sequence stalled at step {step}"
        assert (len(long.output) == 1) == (step == 6)
    lone = core_for(gpt2_package, "pytorch-fp32").run_to_completion([Sequence(list(range(1, 101)), long.params)])[0]
    while core.scheduler.has_work:
        core.step()
    assert long.output == lone.output


def test_a_burst_is_prefilled_in_one_step_when_nothing_decodes(gpt2_package):
    """With no sequence to stall, a step takes up to `idle_prefill` prompt tokens (one forward for
    all), so a burst decodes in step; the tokens are those each prompt gets alone."""
    core = core_for(gpt2_package, "pytorch-fp32", prefill_chunk=16, idle_prefill=64)
    params = SamplingParams(max_new_tokens=6, ignore_eos=True)
    burst = [Sequence(list(range(3 + i, 23 + i)), params) for i in range(4)]  # 4 × 20 tokens
    for seq in burst:
        core.add(seq)
    core.step()  # 64 tokens: three whole prompts and 4 tokens of the fourth
    assert [len(s.output) for s in burst] == [1, 1, 1, 0]
    core.step()  # three decode now: the fourth goes on 16 tokens at a time
    assert [len(s.output) for s in burst] == [2, 2, 2, 1]
    while core.scheduler.has_work:
        core.step()
    for seq in burst:
        alone = core_for(gpt2_package, "pytorch-fp32").run_to_completion([Sequence(seq.prompt, params)])[0]
        assert seq.output == alone.output


def test_requests_arriving_together_at_an_idle_engine_are_prefilled_together(gpt2_package):
    """Four requests sent 1 ms apart all get their first token in one step (with `gather_ms=0` the
    first starts alone: checked by hand, not here, as it races the engine thread); the tokens are
    those each gets alone."""
    import asyncio

    from bushu.generate.engine import GenerationEngine

    engine = GenerationEngine(core_for(gpt2_package, "pytorch-fp32", gather_ms=20.0), name="gpt2")
    firsts_per_step = []
    step = engine.core.step

    def counted():
        events = step()
        firsts_per_step.append(sum(e.completion_tokens == 1 for _, e in events))
        return events

    engine.core.step = counted
    params = SamplingParams(max_new_tokens=5, ignore_eos=True)

    async def one(i):
        await asyncio.sleep(0.001 * i)
        return (await engine.generate([5 + i, 6, 7, 8], params))[1]

    async def burst():
        try:
            return await asyncio.gather(*(one(i) for i in range(4)))
        finally:
            await engine.close()

    tokens = asyncio.run(burst())
    assert max(firsts_per_step) == 4, firsts_per_step
    alone = [core_for(gpt2_package, "pytorch-fp32").run_to_completion([Sequence([5 + i, 6, 7, 8], params)])[0].output
             for i in range(4)]
    assert tokens == alone


def test_the_cache_bound_makes_a_request_wait_and_refuses_one_that_can_never_fit(gpt2_package):
    core = core_for(gpt2_package, "pytorch-fp32", max_tokens_in_flight=100)
    params = SamplingParams(max_new_tokens=50, ignore_eos=True)
    a, b = Sequence([5, 6, 7], params), Sequence([8, 9, 10], params)
    core.add(a)
    core.add(b)
    core.step()
    assert len(core.scheduler.running) + len(core.scheduler.prefilling) == 1 and list(core.scheduler.waiting) == [b]
    while core.scheduler.has_work:
        core.step()
    assert len(a.output) == len(b.output) == 50 and core.scheduler.reserved == 0
    with pytest.raises(InvalidInput, match="'max_tokens': prompt and new tokens \\(103\\) exceed .*--max-tokens-in-flight of 100"):
        core.add(Sequence([1, 2, 3], SamplingParams(max_new_tokens=100)))


@pytest.mark.parametrize("given, message", [
    ({"max_tokens": 0}, "'max_tokens' must be at least 1"),
    ({"temprature": 1}, "unknown sampling parameter\\(s\\) \\['temprature'\\]"),
    ({"top_p": 0}, "'top_p' must be in \\(0, 1\\]"),
    ({"temperature": "hot"}, "'temperature' must be a number"),
    ({"stop": [""]}, "'stop' must be a non-empty string"),
])
def test_bad_sampling_parameters_name_their_field(gpt2_package, given, message):
    core = core_for(gpt2_package, "pytorch-fp32")
    with pytest.raises(InvalidInput, match=message):
        parse_params(given, core.config)


def test_the_static_padded_decode_of_the_gpu_path_changes_no_token(gpt2_package):
    """The CUDA-graph step (fixed shapes, padding rows writing to a scratch position), run eagerly here."""
    texts = [core_for(gpt2_package, "pytorch-fp32").codec.encode(t) for t in TEXTS]
    params = [SamplingParams(max_new_tokens=n, ignore_eos=True) for n in (5, 17, 9, 12)]

    def run(variant, **settings):
        core = core_for(gpt2_package, variant, max_tokens_in_flight=512, max_sequences=8, **settings)
        return [s.output for s in core.run_to_completion([Sequence(t, p) for t, p in zip(texts, params)])]

    dynamic = run("pytorch-fp32")
    assert run("pytorch-fp32", static_cache=True) == dynamic
