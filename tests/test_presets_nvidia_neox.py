"""The presets of issue 13 item 8: NeMo's GPT-3 5B and 20B, Nemotron-3 8B and 22B, Nemotron-4 15B
and 340B, GPT-NeoX-20B. Their published shapes and sizes, the names sources write them under, and
the two shape fields they need (partial rotary, parallel attention + MLP).

The plain published totals are in tests/test_loading.py (``PUBLISHED``). The known answers here
are the finer counts the sources state.
"""

from __future__ import annotations

import json

import pytest

from simulator.core.errors import InputError
from simulator.workload.counting import parameter_count
from simulator.workload.loading import find_preset, from_hf_config, get_preset, load_model, preset_source
from simulator.workload.model import ModelConfig

NEW = ("gpt3-5b", "gpt3-20b", "nemotron3-8b", "nemotron4-15b", "nemotron3-22b", "gpt-neox-20b")


def shape(name: str) -> tuple:
    m = get_preset(name)
    return m.n_layers, m.d_model, m.n_heads, m.kv_heads, m.ffn, m.vocab, m.seq_len


def test_the_new_presets_have_the_shapes_of_their_recipes():
    assert shape("gpt3-5b") == (24, 4096, 32, 32, 16384, 50257, 2048)
    assert shape("gpt3-20b") == (44, 6144, 48, 48, 24576, 50257, 2048)
    assert shape("nemotron3-8b") == (32, 4096, 32, 32, 16384, 256000, 4096)
    assert shape("nemotron4-15b") == (32, 6144, 48, 8, 24576, 256000, 4096)
    assert shape("nemotron3-22b") == (40, 6144, 48, 48, 24576, 256000, 4096)
    assert shape("gpt-neox-20b") == (44, 6144, 64, 64, 24576, 50432, 2048)


def test_nemotron_4_15b_splits_into_the_papers_embedding_and_non_embedding_counts():
    # Parmar et al. 2024 (arXiv:2402.16819), section 2: 3.2B embedding, 12.5B non-embedding.
    count = parameter_count(get_preset("nemotron4-15b"))
    assert count.embedding + count.lm_head == pytest.approx(3.2e9, rel=0.02)
    assert count.layers + count.final_norm == pytest.approx(12.5e9, rel=0.01)


def test_gpt_neox_20b_counts_its_published_parameters_exactly():
    count = parameter_count(get_preset("gpt-neox-20b"))
    assert count.total == 20_554_567_680
    assert count.lm_head == count.embedding == 50432 * 6144  # untied, padded vocabulary


def test_nemotron_and_neox_use_their_architecture_conventions():
    for name in ("nemotron3-8b", "nemotron4-15b", "nemotron3-22b", "nemotron4-340b"):
        m = get_preset(name)
        assert (m.position_embedding, m.rotary_fraction, m.gated_mlp, m.bias, m.tied_embeddings, m.dropout) == (
            "rope", 0.5, False, False, False, False), name
        assert not m.parallel_block
    neox = get_preset("gpt-neox-20b")
    assert neox.parallel_block and neox.rotary_fraction == 0.25 and neox.bias and not neox.tied_embeddings
    for name in ("gpt3-5b", "gpt3-20b"):
        m = get_preset(name)
        assert m.position_embedding == "learned" and m.tied_embeddings and m.bias and m.dropout
        assert m.rotary_fraction == 1.0 and not m.parallel_block


def test_the_new_fields_change_no_existing_preset_or_count():
    llama = get_preset("llama3-8b")
    assert llama.rotary_fraction == 1.0 and not llama.parallel_block
    full = parameter_count(get_preset("gpt-neox-20b").model_copy(update={"rotary_fraction": 1.0,
                                                                         "parallel_block": False}))
    assert full.total == parameter_count(get_preset("gpt-neox-20b")).total


@pytest.mark.parametrize("label, preset", [
    ("Nemotron-340B", "nemotron4-340b"), ("Nemotron 340B", "nemotron4-340b"), ("Nemotron-4 340B", "nemotron4-340b"),
    ("Nemotron-4 15B", "nemotron4-15b"), ("Nemotron 15B", "nemotron4-15b"), ("Nemotron 8B", "nemotron3-8b"),
    ("nvidia/nemotron-3-8b-base-4k", "nemotron3-8b"), ("Nemotron 22B", "nemotron3-22b"),
    ("GPT-3 5B", "gpt3-5b"), ("gpt3_20b", "gpt3-20b"), ("NeMo GPT-3 20B", "gpt3-20b"),
    ("GPT-NeoX-20B", "gpt-neox-20b"), ("EleutherAI/gpt-neox-20b", "gpt-neox-20b"),
])
def test_sources_names_find_the_preset(label, preset):
    assert find_preset(label) == preset


@pytest.mark.parametrize("name", NEW)
def test_every_new_preset_cites_its_source_and_its_count(name):
    source = preset_source(name)
    assert len(source) > 100
    assert "counts" in source  # says how many parameters the shape has


def test_a_gpt_neox_hf_config_reads_partial_rotary_and_the_parallel_block(tmp_path):
    config = {"model_type": "gpt_neox", "num_hidden_layers": 44, "hidden_size": 6144, "num_attention_heads": 64,
              "intermediate_size": 24576, "max_position_embeddings": 2048, "vocab_size": 50432,
              "rotary_pct": 0.25, "use_parallel_residual": True, "tie_word_embeddings": False}
    (tmp_path / "config.json").write_text(json.dumps(config))
    m = from_hf_config(tmp_path)
    assert m.rotary_fraction == 0.25 and m.parallel_block
    assert parameter_count(m).total == 20_554_567_680
    config.update(rotary_pct=0.0)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError) as err:
        from_hf_config(tmp_path)
    assert err.value.field == "rotary_pct"


def test_partial_rotary_needs_rotary_positions():
    with pytest.raises(InputError) as err:
        load_model({"preset": "gpt3-5b", "rotary_fraction": 0.5})
    assert "needs position_embedding 'rope'" in str(err.value) and len(str(err.value).splitlines()) == 1
    with pytest.raises(InputError) as err:
        load_model({"preset": "tiny", "rotary_fraction": 1.5})
    assert err.value.field == "model.rotary_fraction"
    assert ModelConfig(n_layers=1, d_model=8, n_heads=2, vocab=8, seq_len=8, position_embedding="rope",
                       rotary_fraction=0.5).rotary_fraction == 0.5


def test_a_parallel_block_reduces_its_two_branches_with_one_forward_all_reduce():
    from simulator.workload.layer import layer_work
    from simulator.workload.loading import get_preset
    neox = get_preset("gpt-neox-20b")
    sequential = neox.model_copy(update={"parallel_block": False})
    kw = dict(micro_batch=1, tp=4, sequence_parallel=False, recompute="none", precision="bf16")
    par, seq = layer_work(neox, **kw), layer_work(sequential, **kw)
    assert len(par.tp_forward) == 1 and len(seq.tp_forward) == 2
    assert par.tp_forward[0].bytes == seq.tp_forward[0].bytes
    assert len(par.tp_backward) == len(seq.tp_backward) == 2
    sp = dict(kw, sequence_parallel=True)
    assert len(layer_work(neox, **sp).tp_forward) == len(layer_work(sequential, **sp).tp_forward)
