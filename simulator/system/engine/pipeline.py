"""Point-to-point transfers between pipeline stages: the sending side and the receivers' mailbox.

A forward pass of virtual stage ``v`` sends its activation to ``v + 1``; a backward pass sends
its activation gradient to ``v - 1``. A transfer is keyed by what it feeds, ``(replica, pass
kind, micro-batch, receiving virtual stage)``. If the receiver already waits for it, the arrival
wakes it (with the time the transfer was sent); otherwise the arrival is kept until the receiver
asks. Times are seconds; the sent
bytes are those of the step plan's point-to-point collective plan (per GPU).
"""

from __future__ import annotations

import simpy

from simulator.network.collectives import CollectivePlan
from simulator.system.engine.events import PipelineSend, describe_collective
from simulator.system.engine.state import StepState

TransferKey = tuple[int, str, int, int]  # (replica, "F" or "B", micro-batch, receiving virtual stage)


class PipelineTransfers:
    """The pipeline transfers of one run, in flight and arrived."""

    def __init__(self, state: StepState):
        self.state = state
        self._env, self._pp, self._fabric = state.env, state.sp.plan.pp, state.fabric
        self._waiting: dict[TransferKey, simpy.Event] = {}  # a receiver waits on it
        self._arrived: set[TransferKey] = set()  # arrived before their receiver asked
        self._plans: dict[tuple[int, int, int], CollectivePlan] = {}  # (replica, from stage, to stage) -> plan

    def receive(self, key: TransferKey) -> simpy.Event | None:
        """``None`` if the transfer ``key`` has arrived already (it is taken now); else the event
        that fires when it arrives, with the time it was sent (seconds) as its value."""
        arrived = self._arrived
        if key in arrived:
            arrived.remove(key)
            return None
        ev = self._waiting[key] = self._env.event()
        return ev

    def send(self, r: int, v_from: int, v_to: int, mb: int, wait: bool = False) -> simpy.Event | None:
        """Replica ``r``'s virtual stage ``v_from`` sends micro-batch ``mb``'s output to ``v_to`` now;
        with ``wait``, returns the event that fires when it has arrived (a blocking engine waits for it)."""
        state, env, pp = self.state, self._env, self._pp
        t0 = env.now
        forward = v_to > v_from
        key = (r, "F" if forward else "B", mb, v_to)
        plan_key = (r, v_from % pp, v_to % pp)
        plan = self._plans.get(plan_key)
        if plan is None:
            plan = self._plans[plan_key] = state.sp.p2p(v_from, v_to, state.replicas.p2p_class[r])

        sent = env.event() if wait else None

        def arrived() -> None:
            now = env.now
            if sent is not None:
                sent.succeed()
            state.comm_s["pp"] += now - t0
            if state.record is not None:
                state.record(PipelineSend(r, v_from % pp, t0, now, microbatch=mb, chunk=v_from // pp,
                                          direction="activation" if forward else "gradient", to_stage=v_to % pp,
                                          to_chunk=v_to // pp, bytes=plan.bytes, collective=describe_collective(plan)))
            waiting = self._waiting.pop(key, None)
            if waiting is None:
                self._arrived.add(key)
            else:
                waiting.succeed(t0)

        self._fabric.collective(plan, on_done=arrived)
        return sent
