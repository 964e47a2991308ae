"""NCCL's own cost model (``../shared/reference/nccl-model.md``, copied in spirit, not code):
the system NCCL sees (:mod:`.system`), its channel search (:mod:`.search`), its tuning tables
(:mod:`.tables`, ``tables.yaml``), its algorithm × protocol selection (:mod:`.tuner`), the
point-to-point collectives it does not tune (:mod:`.p2p`), and trainsim's fitted correction
layer on top (:mod:`.correction`)."""
