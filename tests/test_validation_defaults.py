"""The rules validation applies to what a row leaves open (issue 13, deliverable 6): framework
defaults, FSDP without a micro-batch, interleaving without a chunk count, default vocabulary and
heads, the Llama recipe for gated MLPs."""

import pandas as pd
import pytest

from simulator.hardware.catalog import load_catalog
from simulator.inputs.efficiency_file import default_efficiency
from simulator.validation.case_model import DEFAULT_HEAD_DIM, DEFAULT_VOCAB, row_model
from simulator.validation.cases import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, case_setup

BASE = dict(case_id="c", n_layers=32, d_model=4096, n_heads=32, vocab=128256, seq_len=4096, global_batch_seqs=64,
            gpu="h100-sxm", n_gpus=64, metric="step_time_s", value=1.0)


def row(**cells) -> pd.Series:
    data = {c: float("nan") for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
    data.update(BASE)
    data.update(cells)
    return pd.Series(data)


def setup(**cells):
    return case_setup(row(**cells), load_catalog(), default_efficiency())


def test_a_megatron_core_row_gets_sequence_parallelism_and_the_distributed_optimizer_with_tp():
    s, used = setup(framework="megatron-core", tp=8, pp=1, micro_batch=1, recompute="none")
    assert s.plan.sequence_parallel and s.plan.tp_overlap == "full" and s.plan.zero_stage == 1
    assert any("megatron-core defaults" in u for u in used)


def test_the_row_beats_the_framework():
    s, _ = setup(framework="megatron-core", tp=8, pp=1, micro_batch=1, recompute="none", seq_parallel=0,
                 zero_stage=0)
    assert not s.plan.sequence_parallel and s.plan.zero_stage == 0


def test_fsdp_without_a_micro_batch_means_no_gradient_accumulation():
    s, used = setup(framework="torchtitan", n_gpus=8, gpus_per_node=8, global_batch_seqs=16)
    assert s.plan.zero_stage == 3 and s.plan.micro_batch == 2 and s.plan.n_microbatches == 1
    assert any("no gradient accumulation" in u for u in used)


def test_torchtitan_selective_is_per_op():
    s, _ = setup(framework="torchtitan", n_gpus=8, gpus_per_node=8, global_batch_seqs=8, recompute="selective")
    assert s.plan.recompute == "per_op"


def test_interleaving_in_the_notes_without_a_chunk_count_searches_the_chunks():
    s, used = setup(n_gpus=32, tp=1, pp=4, dp=8, micro_batch=1, recompute="full", zero_stage=0,
                    notes="interleaved schedule (degree not stated)")
    assert s.plan.vpp > 1 and s.plan.schedule == "interleaved"
    assert any("vpp=" in u and "fastest" in u for u in used)


def test_an_unknown_framework_names_the_column():
    with pytest.raises(ValueError, match="column framework"):
        setup(framework="jax")


def test_a_gpt_shape_without_vocab_or_heads_gets_the_stated_defaults():
    used: list[str] = []
    model = row_model(row(model="GPT-like", n_heads=float("nan"), vocab=float("nan"), d_model=2560), used)
    assert model.n_heads == 2560 // DEFAULT_HEAD_DIM and model.vocab == DEFAULT_VOCAB
    assert any("vocab" in u for u in used) and any("n_heads" in u for u in used)


def test_a_gated_llama_shape_gets_rotary_positions_and_untied_embeddings():
    used: list[str] = []
    model = row_model(row(model="Llama-3-8B-like", n_kv_heads=8, d_ffn=14336, seq_len=8192, n_params_b="8"), used)
    assert model.gated_mlp and model.position_embedding == "rope" and not model.tied_embeddings


def test_a_source_whose_rows_name_their_framework_in_the_notes():
    from simulator.validation.cases import row_framework
    used: list[str] = []
    assert row_framework(row(source_id="colossal-lightning", notes="Row 'ddp (AMP)', model gpt2_xl"), used).name == "ddp"
    assert row_framework(row(source_id="colossal-lightning", notes="Row 'deepspeed (zero3)'"), used).name == "deepspeed"
