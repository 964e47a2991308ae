"""The model of a validation row: its shape from the row, from a preset, or from stated defaults.

* A row that leaves ``n_layers`` or ``d_model`` empty, or leaves ``n_heads`` or ``vocab`` empty and
  names a model preset (by name or alias, :func:`~simulator.workload.loading.find_preset`), gets the
  preset's shape and architecture with the shape cells it does state.
* Otherwise the row's shape, with documented defaults for what GPT-style rows often leave out:
  ``n_heads`` empty = ``d_model / 128`` (:data:`DEFAULT_HEAD_DIM`), ``vocab`` empty =
  :data:`DEFAULT_VOCAB`, ``n_kv_heads`` empty = ``n_heads``, ``d_ffn`` empty = ``4 d_model``.
* Whether the MLP is gated, the embeddings tied and the positions learned is not in the file: of
  the 8 combinations, the first whose parameter count matches ``n_params_b`` to the digits given
  (else the closest) is used, in this order: plain GPT (4h MLP, untied, learned positions) first,
  and for a gated MLP the Llama recipe first (rotary positions, untied embeddings, RMSNorm, no
  biases, no dropout). A row more than 30 % from all of them (a mixture of experts, say) is not
  simulated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import ValidationError

from simulator.validation.cells import blank, count, number
from simulator.workload.counting import parameter_count
from simulator.workload.loading import find_preset, get_preset, preset_names
from simulator.workload.model import ModelConfig

DEFAULT_HEAD_DIM = 128
"""Head dimension of a row that states ``d_model`` but not ``n_heads``: 128 is the head size of
GPT-3-style models from 1.3B up as trained with FlashAttention-2 (Dao, arXiv:2307.08691, section
4.2: "head dimension 128") and of GLM-130B (96 heads x 128 = 12,288; arXiv:2210.02414, Table 8)."""

DEFAULT_VOCAB = 51200
"""Vocabulary of a row that states a GPT-style shape but no vocabulary: GPT-2's BPE (50,257 tokens)
padded as Megatron-LM pads it, the size Megatron-LM papers state (Narayanan et al. 2021,
arXiv:2104.04473; Korthikanti et al. 2022, arXiv:2205.05198: "v = 51200")."""

MAX_PARAMETER_MISMATCH = 0.3
"""A row whose stated size is further than this from every dense variant of its shape is not a
dense transformer trainsim can simulate (the calibration rows are all within 3 %)."""


SHAPE_COLUMNS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_ffn", "vocab")


def preset_model(row: pd.Series, empty: list[str], used: list[str]) -> ModelConfig:
    """A row that names a preset model (or an alias of one) and leaves shape cells empty:
    the preset's shape and architecture, with the cells the row states."""
    name = None if blank(row["model"]) else str(row["model"]).strip()
    preset = find_preset(name) if name else None
    if preset is None:
        raise ValueError(f"column {empty[0]} is empty and model {name!r} is not a preset or an alias of one "
                         f"({', '.join(preset_names())}); state the shape columns")
    stated = {c: count(row, c, minimum=1) for c in SHAPE_COLUMNS if not blank(row[c])}
    try:
        model = ModelConfig(**{**get_preset(preset).model_dump(), **stated, "name": name,
                               "seq_len": count(row, "seq_len", minimum=1)})
    except ValidationError as err:
        raise ValueError(f"preset {preset} with the row's shape columns: {err.errors()[0]['msg']}") from None
    used.append(f"model shape from preset {preset} ({', '.join(empty)} empty)")
    if not blank(row["n_params_b"]):
        target = number(row, "n_params_b") * 1e9
        n = parameter_count(model).total
        if abs(n - target) / target > MAX_PARAMETER_MISMATCH:
            raise ValueError(f"n_params_b={row['n_params_b']}, but preset {preset} has {n / 1e9:.3g}B parameters: "
                             "the row's model is not that preset")
    return model


def row_model(row: pd.Series, used: list[str]) -> ModelConfig:
    """The model of one row (module docstring); ``used`` gets every default it needed."""
    empty = [c for c in ("n_layers", "d_model", "n_heads", "vocab") if blank(row[c])]
    named = not blank(row["model"]) and find_preset(str(row["model"]).strip()) is not None
    if empty and (named or not set(empty) <= {"n_heads", "vocab"}):
        return preset_model(row, empty, used)
    h = count(row, "d_model", minimum=1)
    a = None if blank(row["n_heads"]) else count(row, "n_heads", minimum=1)
    if a is None:
        a = max(1, h // DEFAULT_HEAD_DIM)
        used.append(f"n_heads={a} (d_model / {DEFAULT_HEAD_DIM})")
    vocab = None if blank(row["vocab"]) else count(row, "vocab", minimum=1)
    if vocab is None:
        vocab = DEFAULT_VOCAB
        used.append(f"vocab={DEFAULT_VOCAB}")
    base = dict(
        name=str(row["model"]) if not blank(row["model"]) else str(row["case_id"]),
        n_layers=count(row, "n_layers", minimum=1), d_model=h, n_heads=a, n_kv_heads=count(row, "n_kv_heads", minimum=1),
        d_ffn=count(row, "d_ffn", minimum=1), vocab=vocab, seq_len=count(row, "seq_len", minimum=1),
    )
    if base["n_kv_heads"] is None:
        used.append("n_kv_heads=n_heads")
    if base["d_ffn"] is None:
        used.append("d_ffn=4*d_model")
    variants = []
    combos = [(False, t, learned) for t in (False, True) for learned in (True, False)]
    combos += [(True, t, learned) for learned in (False, True) for t in (False, True)]  # Llama recipe: rope, untied first
    for gated, tied, learned in combos:
        extra = dict(gated_mlp=gated, tied_embeddings=tied, position_embedding="learned" if learned else "rope")
        if gated:
            extra.update(norm="rmsnorm", bias=False, dropout=False)
        variants.append(ModelConfig(**base, **extra))
    if blank(row["n_params_b"]):
        used.append("model variant: plain GPT (no n_params_b)")
        return variants[0]
    text = str(row["n_params_b"]).strip()
    target = number(row, "n_params_b") * 1e9
    decimals = len(text.split(".")[1]) if "." in text else 0
    rounding = 0.5 * 10.0 ** -decimals * 1e9  # the count is as precise as the digits the source gave
    errors = [abs(parameter_count(m).total - target) for m in variants]
    within = [m for m, e in zip(variants, errors) if e <= rounding]
    # the first variant (plain GPT first) that matches the stated size, else the closest
    best = within[0] if within else variants[int(np.argmin(errors))]
    off = min(errors) / target
    if off > MAX_PARAMETER_MISMATCH:
        raise ValueError(
            f"n_params_b={text}, but the shape gives {parameter_count(best).total / 1e9:.3g}B parameters at best "
            f"({off:.0%} off): a mixture of experts or another architecture trainsim does not model")
    used.append(
        "model variant: " + ", ".join((
            "gated MLP" if best.gated_mlp else "4h MLP", "tied" if best.tied_embeddings else "untied",
            f"{best.position_embedding} positions",
        )) + f" ({parameter_count(best).total / 1e9:.3f}B for n_params_b {text})"
    )
    return best


