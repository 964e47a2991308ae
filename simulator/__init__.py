"""trainsim: a discrete-event simulator of distributed LLM training.

The Python API::

    from simulator import load_scenario, simulate
    result = simulate(load_scenario("gpt3-175b-1024-a100").with_(tp=4, pp=16, vpp=1))
"""

from simulator.core.errors import InputError, PlanError, SimulationError, TrainsimError
from simulator.inputs.scenario import Scenario, load_scenario
from simulator.results.assemble import simulate

__all__ = ["InputError", "PlanError", "Scenario", "SimulationError", "TrainsimError", "load_scenario", "simulate"]
__version__ = "0.1.0"
