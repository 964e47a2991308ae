"""Where a :class:`ModelConfig` comes from: presets, Hugging Face configs, scenario files.

Three sources, all ending in a validated :class:`ModelConfig`:

* :func:`get_preset` — named published models from ``presets.yaml`` (package
  data; every entry cites its source).
* :func:`from_hf_config` — a Hugging Face ``config.json`` of the llama, mistral,
  qwen2, gpt2 or gpt_neox families.
* :func:`load_model` — whatever a scenario file holds under ``model:`` (a preset
  name, a preset with overrides, an HF config with overrides, or every field
  spelled out).

Every problem raises :class:`~simulator.core.errors.InputError` naming the file and
the field; pydantic's own errors are translated, never shown raw.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from simulator.core.errors import InputError, from_validation_error
from simulator.workload.model import ModelConfig

SUPPORTED_HF_FAMILIES = ("llama", "mistral", "qwen2", "gpt2", "gpt_neox")
"""``model_type`` values :func:`from_hf_config` understands."""

_PRESETS_FILE = "presets.yaml"


# --------------------------------------------------------------------------- presets


@lru_cache(maxsize=1)
def _preset_file() -> dict[str, dict[str, Any]]:
    """The parsed preset file: name -> entry (ModelConfig fields plus ``source``)."""
    text = resources.files("simulator.workload").joinpath(_PRESETS_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _presets() -> dict[str, dict[str, Any]]:
    """Preset name -> ModelConfig fields (``source`` and ``aliases`` removed, ``name`` = the key)."""
    return {name: {"name": name, **{k: v for k, v in entry.items() if k not in ("source", "aliases")}}
            for name, entry in _preset_file().items()}


def _name_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@lru_cache(maxsize=1)
def _preset_keys() -> dict[str, str]:
    """Normalised preset name or alias -> preset name."""
    keys: dict[str, str] = {}
    for name, entry in _preset_file().items():
        for label in (name, *entry.get("aliases", ())):
            keys[_name_key(label)] = name
    return keys


def find_preset(model_name: str) -> str | None:
    """The preset a published model name refers to, or None: its name or one of its
    ``aliases``, ignoring case, spaces and punctuation (``"Llama 3.1 70B"``,
    ``"meta-llama/Llama-3.1-70B"`` and ``"llama3-70b"`` all give ``llama3-70b``)."""
    return _preset_keys().get(_name_key(model_name))


def preset_names() -> list[str]:
    """Names of the bundled model presets, sorted."""
    return sorted(_preset_file())


def preset_source(name: str) -> str:
    """The citation of preset ``name`` (raises :class:`InputError` if unknown)."""
    _check_preset_name(name)
    return str(_preset_file()[name]["source"])


def _check_preset_name(name: object, *, file: str | Path | None = None, field: str = "model") -> str:
    if not isinstance(name, str) or name not in _preset_file():
        raise InputError(
            f"unknown model preset {name!r}; presets are: {', '.join(preset_names())}",
            file=file,
            field=field,
        )
    return name


def get_preset(name: str) -> ModelConfig:
    """The :class:`ModelConfig` of preset ``name``.

    Raises :class:`InputError` (``field="model"``) listing the presets if the
    name is unknown.
    """
    _check_preset_name(name)
    return ModelConfig(**_presets()[name])


# --------------------------------------------------------------------------- Hugging Face


def _hf_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise InputError("no such Hugging Face config file (give a config.json or a directory holding one)", file=p)
    return p


def _read_json(p: Path) -> dict[str, Any]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not a valid JSON file ({exc})", file=p) from None
    if not isinstance(data, dict):
        raise InputError(f"a config.json must hold a JSON object, got {type(data).__name__}", file=p)
    return data


class _HFReader:
    """Reads typed values out of one config.json, raising InputError naming the key."""

    def __init__(self, data: dict[str, Any], file: Path):
        self.data, self.file = data, file
        self.family = str(data.get("model_type"))

    def _missing(self, key: str) -> InputError:
        return InputError(
            f"missing key {key!r}, which a '{self.family}' config needs "
            f"(supported model_type values: {', '.join(SUPPORTED_HF_FAMILIES)})",
            file=self.file,
            field=key,
        )

    def int(self, key: str, default: int | None = None, *, required: bool = True) -> int | None:
        """A positive integer at ``key``; ``null`` or absent gives ``default`` unless required."""
        value = self.data.get(key)
        if value is None:
            if required and default is None:
                raise self._missing(key)
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"must be a positive integer, got {value!r}", file=self.file, field=key)
        return value

    def float(self, key: str, default: float) -> float:
        """A number in [0, 1] at ``key`` (a probability such as a dropout rate); absent gives ``default``."""
        value = self.data.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InputError(f"must be a number from 0 to 1, got {value!r}", file=self.file, field=key)
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InputError(f"must be true or false, got {value!r}", file=self.file, field=key)
        return value


def _llama_like(r: _HFReader) -> tuple[dict[str, Any], dict[str, str]]:
    """llama (1, 2, 3, 3.1 ...), mistral and qwen2: RoPE, RMSNorm, SwiGLU, GQA."""
    heads = r.int("num_attention_heads")
    h = r.int("hidden_size")
    head_dim = r.int("head_dim", required=False)
    if head_dim is not None and head_dim * heads != h:
        raise InputError(
            f"head_dim={head_dim} differs from hidden_size / num_attention_heads = {h}/{heads}; "
            "trainsim models head_dim = hidden_size / num_attention_heads only",
            file=r.file,
            field="head_dim",
        )
    # Llama's rope_scaling (llama3, linear, dynamic ...) changes position encoding,
    # not parameter counts or FLOPs, so it is accepted and ignored.
    if r.family == "qwen2":
        # Qwen2 has biases on q, k and v only; ModelConfig's single switch cannot say
        # that, so biases are left out (undercount: (a + 2k) * d per layer, < 0.01%).
        bias = False
    else:
        bias = r.bool("attention_bias", False) or r.bool("mlp_bias", False)
    fields = dict(
        n_layers=r.int("num_hidden_layers"),
        d_model=h,
        n_heads=heads,
        n_kv_heads=r.int("num_key_value_heads", heads),  # HF default: MHA
        d_ffn=r.int("intermediate_size"),
        vocab=r.int("vocab_size"),
        seq_len=r.int("max_position_embeddings"),
        gated_mlp=True,
        tied_embeddings=r.bool("tie_word_embeddings", False),
        norm="rmsnorm",
        bias=bias,
        dropout=r.float("attention_dropout", 0.0) > 0,
        position_embedding="rope",
    )
    keys = dict(n_layers="num_hidden_layers", d_model="hidden_size", n_heads="num_attention_heads",
                n_kv_heads="num_key_value_heads", d_ffn="intermediate_size", vocab="vocab_size",
                seq_len="max_position_embeddings")
    return fields, keys


def _gpt2(r: _HFReader) -> tuple[dict[str, Any], dict[str, str]]:
    """GPT-2: learned positions, LayerNorm, biases, GeLU MLP of n_inner (default 4h), tied head."""
    h = r.int("n_embd")
    fields = dict(
        n_layers=r.int("n_layer"),
        d_model=h,
        n_heads=r.int("n_head"),
        d_ffn=r.int("n_inner", 4 * h, required=False),
        vocab=r.int("vocab_size"),
        seq_len=r.int("n_positions"),
        gated_mlp=False,
        tied_embeddings=r.bool("tie_word_embeddings", True),
        norm="layernorm",
        bias=True,
        dropout=r.float("resid_pdrop", 0.1) > 0,
        position_embedding="learned",
    )
    keys = dict(n_layers="n_layer", d_model="n_embd", n_heads="n_head", d_ffn="n_inner",
                vocab="vocab_size", seq_len="n_positions")
    return fields, keys


def _gpt_neox(r: _HFReader) -> tuple[dict[str, Any], dict[str, str]]:
    """GPT-NeoX / Pythia: partial rotary (``rotary_pct``, HF default 0.25), parallel attention and
    MLP (``use_parallel_residual``, HF default true), LayerNorm, biases, GeLU MLP, untied head."""
    fields = dict(
        n_layers=r.int("num_hidden_layers"),
        d_model=r.int("hidden_size"),
        n_heads=r.int("num_attention_heads"),
        d_ffn=r.int("intermediate_size"),
        vocab=r.int("vocab_size"),
        seq_len=r.int("max_position_embeddings"),
        gated_mlp=False,
        tied_embeddings=r.bool("tie_word_embeddings", False),
        norm="layernorm",
        bias=r.bool("attention_bias", True),
        dropout=max(r.float("hidden_dropout", 0.0), r.float("attention_dropout", 0.0)) > 0,
        position_embedding="rope",
        rotary_fraction=r.float("rotary_pct", 0.25),
        parallel_block=r.bool("use_parallel_residual", True),
    )
    keys = dict(n_layers="num_hidden_layers", d_model="hidden_size", n_heads="num_attention_heads",
                d_ffn="intermediate_size", vocab="vocab_size", seq_len="max_position_embeddings",
                rotary_fraction="rotary_pct", parallel_block="use_parallel_residual")
    return fields, keys


_FAMILIES = {"llama": _llama_like, "mistral": _llama_like, "qwen2": _llama_like,
             "gpt2": _gpt2, "gpt_neox": _gpt_neox}


def _hf_name(data: dict[str, Any], p: Path) -> str:
    name = data.get("_name_or_path")
    if isinstance(name, str) and name.strip():
        return name.rstrip("/").split("/")[-1]
    if p.parent.name:
        return p.parent.name
    return str(data.get("model_type", "hf-model"))


def from_hf_config(path: str | Path, *, seq_len: int | None = None, name: str | None = None) -> ModelConfig:
    """Read a Hugging Face ``config.json`` (the file, or a directory holding it).

    ``model_type`` must be one of :data:`SUPPORTED_HF_FAMILIES`:

    * ``llama``, ``mistral``, ``qwen2``: ``num_hidden_layers``, ``hidden_size``,
      ``num_attention_heads``, ``num_key_value_heads`` (absent = MHA),
      ``intermediate_size``, ``vocab_size``, ``max_position_embeddings``,
      ``tie_word_embeddings`` (absent = false); SwiGLU, RMSNorm, RoPE, no biases.
      ``rope_scaling`` is accepted and ignored (it changes no count).
    * ``gpt2``: ``n_layer``, ``n_embd``, ``n_head``, ``n_inner`` (null = 4h),
      ``n_positions``, ``vocab_size``; learned positions, LayerNorm, biases, GeLU, tied head.
    * ``gpt_neox``: ``num_hidden_layers``, ``hidden_size``, ``num_attention_heads``,
      ``intermediate_size``, ``max_position_embeddings``, ``vocab_size``,
      ``tie_word_embeddings``, ``rotary_pct`` (absent = 0.25), ``use_parallel_residual``
      (absent = true); rotary, LayerNorm, biases, GeLU.

    ``seq_len`` overrides the context length (by default ``max_position_embeddings``
    / ``n_positions``, which for long-context models such as Llama 3.1, 131072, is
    rarely the training sequence length). ``name`` defaults to the last part of
    ``_name_or_path`` or the directory name.

    Raises :class:`InputError` with ``file`` = the config path and ``field`` = the
    offending key for a missing or ill-typed key, an unknown ``model_type`` or a
    file that is not JSON.
    """
    p = _hf_file(path)
    data = _read_json(p)
    family = data.get("model_type")
    if family is None:
        raise InputError(
            f"missing key 'model_type'; supported values: {', '.join(SUPPORTED_HF_FAMILIES)}",
            file=p, field="model_type",
        )
    if family not in _FAMILIES:
        raise InputError(
            f"unsupported model_type {family!r}; supported values: {', '.join(SUPPORTED_HF_FAMILIES)}",
            file=p, field="model_type",
        )
    reader = _HFReader(data, p)
    fields, keys = _FAMILIES[family](reader)
    if fields["d_model"] % fields["n_heads"]:
        raise InputError(
            f"{keys['d_model']}={fields['d_model']} is not divisible by {keys['n_heads']}={fields['n_heads']}",
            file=p, field=keys["n_heads"],
        )
    if fields.get("n_kv_heads") and fields["n_heads"] % fields["n_kv_heads"]:
        raise InputError(
            f"{keys['n_heads']}={fields['n_heads']} is not divisible by "
            f"{keys['n_kv_heads']}={fields['n_kv_heads']}",
            file=p, field=keys["n_kv_heads"],
        )
    if seq_len is not None:
        fields["seq_len"] = seq_len
    fields["name"] = name if name is not None else _hf_name(data, p)
    try:
        return ModelConfig(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = str(err["loc"][0]) if err["loc"] else ""
        raise InputError(err["msg"], file=p, field=keys.get(loc, loc or None)) from None


# --------------------------------------------------------------------------- scenario spec


def _build(fields: dict[str, Any], *, file: str | Path | None, hint: str = "") -> ModelConfig:
    try:
        return ModelConfig(**fields)
    except ValidationError as exc:
        raise from_validation_error(exc, schema=ModelConfig, file=file, prefix="model",
                                    also_allowed=("preset", "hf_config"), hint=hint) from None


def load_model(spec: Any, *, base_dir: Path | None = None, file: str | None = None) -> ModelConfig:
    """Turn a scenario's ``model:`` entry into a :class:`ModelConfig`.

    ``spec`` may be:

    * a preset name: ``"llama3-70b"``;
    * ``{preset: NAME, <field>: value, ...}``: a preset with some fields overridden;
    * ``{hf_config: PATH, <field>: value, ...}``: a Hugging Face config (``PATH``
      relative to ``base_dir``, default the working directory) with overrides;
      ``seq_len`` replaces ``max_position_embeddings``;
    * ``{n_layers: ..., d_model: ..., ...}``: every required :class:`ModelConfig` field.

    Raises :class:`InputError` with ``file=file`` and ``field="model.<field>"``
    (``"model"`` for the spec as a whole). Errors inside an HF config name that
    config file and its key instead.
    """
    if isinstance(spec, str):
        _check_preset_name(spec, file=file)
        return get_preset(spec)
    if not isinstance(spec, Mapping):
        raise InputError(
            f"must be a preset name or a mapping (with 'preset', 'hf_config' or the model fields), "
            f"got {type(spec).__name__} {spec!r}; presets are: {', '.join(preset_names())}",
            file=file, field="model",
        )
    bad_keys = [k for k in spec if not isinstance(k, str)]
    if bad_keys:
        raise InputError(f"field names must be strings, got {bad_keys[0]!r}", file=file, field="model")
    overrides = dict(spec)
    if "preset" in overrides and "hf_config" in overrides:
        raise InputError("give either 'preset' or 'hf_config', not both", file=file, field="model.hf_config")

    if "preset" in overrides:
        name = _check_preset_name(overrides.pop("preset"), file=file, field="model.preset")
        return _build({**_presets()[name], **overrides}, file=file)

    if "hf_config" in overrides:
        raw = overrides.pop("hf_config")
        if not isinstance(raw, (str, Path)) or not str(raw):
            raise InputError(f"must be a path to a config.json or its directory, got {raw!r}",
                             file=file, field="model.hf_config")
        path = Path(raw).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.exists():
            raise InputError(f"no such file or directory: {path}", file=file, field="model.hf_config")
        seq_len = overrides.pop("seq_len", None)
        if seq_len is not None and (isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len <= 0):
            raise InputError(f"must be a positive integer, got {seq_len!r}", file=file, field="model.seq_len")
        base = from_hf_config(path, seq_len=seq_len)
        if not overrides:
            return base
        return _build({**base.model_dump(), **overrides}, file=file)

    return _build(
        overrides, file=file,
        hint="A model is a preset name, {preset: NAME, ...overrides}, {hf_config: PATH, ...overrides} "
             "or all of n_layers, d_model, n_heads, vocab, seq_len",
    )
