"""bench/step_cost.py: equal training wall time from alternating per-step costs (a fake clock makes
the timings exact), and one real measurement of training.train on a tiny model."""
import pytest

from bench.step_cost import alternating_costs, equal_time_steps, summarise, train_step_costs
from configs.default import get_default_config


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_alternating_costs_medians_rotation_and_budget():
    clock = FakeClock()
    order = []
    # model a: 0.2 s/step, b: 0.5 s/step; round 2 is disturbed for whichever runs first in it
    load = {2: 10.0}

    def chunk(name, cost, k):
        def run():
            rnd = len(order) // 2
            first = len(order) % 2 == 0
            order.append(name)
            clock.now += cost * k * (load.get(rnd, 1.0) if first else 1.0)
            return k
        return run

    costs = alternating_costs({"a": chunk("a", 0.2, 4), "b": chunk("b", 0.5, 2)}, repeats=5, clock=clock)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]      # round r starts at model r mod 2
    assert costs["a"]["median"] == pytest.approx(0.2) and costs["b"]["median"] == pytest.approx(0.5)
    assert costs["a"]["max"] == pytest.approx(2.0) and costs["a"]["n"] == 5      # the disturbed round is kept, not the median
    assert costs["a"]["values"][2] == pytest.approx(2.0)                          # in round order (pairs by round)
    steps = equal_time_steps(costs, budget_seconds=100.0)
    assert steps == {"a": 500, "b": 200}


def test_self_timed_chunks_and_bad_input():
    costs = alternating_costs({"x": lambda: (10, 3.0)}, repeats=3, clock=FakeClock())
    assert costs["x"]["median"] == pytest.approx(0.3) and costs["x"]["spread"] == 0.0
    s = summarise([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median"] == 3.0 and s["q25"] == 2.0 and s["q75"] == 4.0
    with pytest.raises(ValueError, match="steps > 0"):
        alternating_costs({"x": lambda: 0}, repeats=1)
    with pytest.raises(ValueError, match="budget_seconds"):
        equal_time_steps(costs, 0)


def test_train_step_costs_runs_the_training_loop():
    config = get_default_config()
    config.model.nf = 8
    config.training.batch_size = 8
    config.training.num_threads = 1
    # a frozen outer clock: the costs must come from the training loop's own time stamps (start-up,
    # checkpoint loading and saving excluded), so they are still > 0
    costs = train_step_costs({"hot": config}, steps=2, warmup=1, repeats=2, clock=FakeClock())
    c = costs["hot"]
    assert c["n"] == 2 and len(c["values"]) == 2 and 0 < c["min"] <= c["median"] <= c["max"]
