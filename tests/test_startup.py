"""Startup speed (issue 15): ``import simulator`` and ``trainsim --help`` load none of the heavy
libraries, and the executor runs in-process where a local Dask cluster would not pay."""

import subprocess
import sys

import pytest

import simulator
from simulator.studies.executor import MAX_CORES_IN_PROCESS, MIN_TASKS_FOR_CLUSTER, executor, in_process

HEAVY = ("pandas", "networkx", "simpy", "numpy", "pydantic", "dask", "scipy", "matplotlib")


def _loaded_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return sorted({m.split(".")[0] for m in out} & set(HEAVY))


def test_import_simulator_loads_no_heavy_library():
    assert _loaded_after("import simulator") == []


def test_the_cli_module_loads_no_simulation_library():
    # typer and rich are the CLI's own; pydantic comes with the error types
    assert set(_loaded_after("import simulator.cli")) <= {"pydantic"}


def test_the_public_api_still_imports_eagerly_named():
    from simulator import InputError, Scenario, StepResult, compare, grid, load_scenario, plan_search, simulate

    assert callable(simulate) and callable(load_scenario) and callable(plan_search)
    assert callable(compare) and callable(grid) and issubclass(InputError, Exception)
    assert Scenario.__name__ == "Scenario" and StepResult.__name__ == "StepResult"
    assert set(simulator.__all__) <= set(dir(simulator))
    assert simulator.__version__
    with pytest.raises(AttributeError):
        simulator.no_such_name  # noqa: B018


def test_the_cli_default_scenario_is_the_scenario_modules():
    from simulator.cli import DEFAULT_SCENARIO
    from simulator.inputs.scenario import DEFAULT_SCENARIO as SCENARIO_DEFAULT

    assert DEFAULT_SCENARIO == SCENARIO_DEFAULT


def test_the_executor_rule():
    # a scheduler: always Dask; an explicit --workers N: honoured
    assert not in_process("tcp://host:8786", None, tasks=1, cores=1)
    assert not in_process(None, 2, tasks=1, cores=2) and not in_process(None, 4, tasks=None, cores=64)
    assert in_process(None, 1, tasks=1000, cores=64)
    # the default: in-process on <= 2 cores, or with few tasks
    assert in_process(None, None, tasks=None, cores=MAX_CORES_IN_PROCESS)
    assert in_process(None, None, tasks=10_000, cores=1)
    assert in_process(None, None, tasks=MIN_TASKS_FOR_CLUSTER - 1, cores=64)
    assert not in_process(None, None, tasks=MIN_TASKS_FOR_CLUSTER, cores=64)
    assert not in_process(None, None, tasks=None, cores=MAX_CORES_IN_PROCESS + 1)


def test_the_default_executor_on_two_cores_yields_no_client(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    with executor() as client:
        assert client is None
    with executor(None, None, tasks=5) as client:
        assert client is None


def test_simulating_a_step_does_not_import_pandas():
    # pandas comes with the DataFrames (result.timeline, breakdown_frame, ...), not with the step
    code = "from simulator import load_scenario, simulate\nr = simulate(load_scenario('gpt2xl-8-l40s-dp'))"
    assert "pandas" not in _loaded_after(code)


def test_the_timeline_is_built_from_the_events_on_first_use():
    import dataclasses
    import pickle

    import pandas as pd

    from simulator import load_scenario, simulate
    from simulator.system.engine import TIMELINE_COLUMNS

    r = simulate(load_scenario("gpt2xl-8-l40s-dp"), record_timeline=True)
    assert list(r.timeline.columns) == list(TIMELINE_COLUMNS) and len(r.timeline) == len(r.events) > 0
    assert r.timeline is r.timeline  # built once
    assert len(pickle.loads(pickle.dumps(r)).timeline) == len(r.events)
    assert dataclasses.replace(r, timeline=pd.DataFrame()).timeline.empty
