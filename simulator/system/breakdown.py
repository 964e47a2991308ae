"""Where a step's time goes: the categories of the breakdown, one vocabulary for the engine, the
results, the report, the plots and the tables.

For every pipeline stage the categories add up to the step time. ``*_comm`` are *exposed*
communication (not hidden behind compute); ``bubble`` is waiting for other pipeline stages
(fill, drain, a neighbour, the slowest stage at the end of the step) and ``stall`` waiting
caused by variability (slower peers, pipeline waits beyond those of the same step without it).
"""

from __future__ import annotations

PASS_COMPUTE = ("forward", "backward", "recompute")
"""Compute inside a forward or backward pass: what variability stretches."""
PASS_COMMUNICATION = ("tp_comm", "cp_comm", "dp_comm")
"""Communication inside a pass: TP and CP collectives, and ZeRO-3's gathers and scatters."""
COMPUTE = (*PASS_COMPUTE, "optimizer")
COMMUNICATION = ("tp_comm", "cp_comm", "pp_comm", "dp_comm")
"""Exposed communication by kind; also the kinds of hidden communication."""
IDLE = ("bubble", "stall")
BREAKDOWN_KEYS = (*COMPUTE, *COMMUNICATION, *IDLE)
"""Every category, in report order."""
