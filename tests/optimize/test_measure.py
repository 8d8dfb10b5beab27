import numpy as np

from bushu.optimize.measure import Workload, time_interleaved


def test_every_workload_is_timed_at_both_batches_each_round():
    calls: list[tuple[str, int]] = []

    def runner(name):
        return lambda x: calls.append((name, len(x["x"])))

    single, batch = {"x": np.zeros((1, 2))}, {"x": np.zeros((8, 2))}
    timings = time_interleaved({n: Workload(runner(n), single, batch) for n in "abc"}, rounds=4, warmup=1)
    assert set(timings) == {"a", "b", "c"}
    for name in "abc":
        assert calls.count((name, 1)) == 5 and calls.count((name, 8)) == 5
        t = timings[name]
        assert t.batch == 8 and 0 <= t.p50_ms_b1 <= t.p95_ms_b1 and t.p50_ms_batch <= t.p95_ms_batch
    timed = [name for name, size in calls[6:] if size == 1]  # after warm-up: rounds rotate the order
    assert timed[:3] == ["a", "b", "c"] and timed[3:6] == ["b", "c", "a"]
