"""trainsim: a discrete-event simulator of distributed LLM training.

The Python API::

    from simulator import compare, grid, load_scenario, plan_search, simulate
    result = simulate(load_scenario("gpt3-175b-1024-a100").with_(tp=4, pp=16, vpp=1))
    table = compare(load_scenario("llama3-70b-512-h100"), grid(tp=[4, 8], pp=[4, 8]))
    best = plan_search(load_scenario("llama3-70b-512-h100"), top_k=16).best

The package tree is the architecture (``docs/architecture.md``): ``core`` at the bottom;
``workload``, ``hardware`` and ``network`` beside each other; ``system`` (the step simulation);
``inputs``, ``results``, ``studies`` and ``validation`` above; imports only point down.
"""

from simulator.core.errors import InputError, PlanError, SimulationError, TrainsimError
from simulator.core.version import __version__
from simulator.inputs.scenario import Scenario, load_scenario
from simulator.results.assemble import simulate
from simulator.results.step import StepResult
from simulator.studies.planner import plan_search
from simulator.studies.study import compare, grid

__all__ = ["InputError", "PlanError", "Scenario", "SimulationError", "StepResult", "TrainsimError", "__version__",
           "compare", "grid", "load_scenario", "plan_search", "simulate"]
