"""trainsim: a discrete-event simulator of distributed LLM training.

The Python API::

    from simulator import compare, grid, load_scenario, plan_search, simulate
    result = simulate(load_scenario("gpt3-175b-1024-a100").with_(tp=4, pp=16, vpp=1))
    table = compare(load_scenario("llama3-70b-512-h100"), grid(tp=[4, 8], pp=[4, 8]))
    best = plan_search(load_scenario("llama3-70b-512-h100"), top_k=16).best

The package tree is the architecture (``docs/architecture.md``): ``core`` at the bottom;
``workload``, ``hardware`` and ``network`` beside each other; ``system`` (the step simulation);
``inputs``, ``results``, ``studies`` and ``validation`` above; imports only point down.

The public names are imported on first use (module ``__getattr__``, PEP 562), so that
``import simulator`` (and so ``trainsim --help``) does not load pydantic, numpy, pandas,
networkx or SimPy; ``from simulator import simulate`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from simulator.core.version import __version__

#: Each public name and the module that defines it.
_PUBLIC: dict[str, str] = {
    "InputError": "simulator.core.errors",
    "PlanError": "simulator.core.errors",
    "SimulationError": "simulator.core.errors",
    "TrainsimError": "simulator.core.errors",
    "Scenario": "simulator.inputs.scenario",
    "load_scenario": "simulator.inputs.scenario",
    "simulate": "simulator.results.assemble",
    "StepResult": "simulator.results.step",
    "plan_search": "simulator.studies.planner",
    "compare": "simulator.studies.study",
    "grid": "simulator.studies.study",
}

__all__ = ["InputError", "PlanError", "Scenario", "SimulationError", "StepResult", "TrainsimError", "__version__",
           "compare", "grid", "load_scenario", "plan_search", "simulate"]

if TYPE_CHECKING:  # for type checkers and IDEs: the names as if imported eagerly
    from simulator.core.errors import InputError, PlanError, SimulationError, TrainsimError
    from simulator.inputs.scenario import Scenario, load_scenario
    from simulator.results.assemble import simulate
    from simulator.results.step import StepResult
    from simulator.studies.planner import plan_search
    from simulator.studies.study import compare, grid


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once; later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
