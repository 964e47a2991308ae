"""Derive the attention-kernel priors of simulator/inputs/efficiency.yaml from the published
kernel benchmarks (../shared/reference/kernels.csv), so the numbers there can be rerun.

Each prior is the fraction of dense bf16 peak one fused attention kernel family reaches on a
GPU generation for a training pass (forward + backward), causal, head dim 128, sequences
2k-8k (the training shapes of the calibration files):

* measured directly where a fwd+bwd causal hd128 row exists (FlashAttention-2 on A100 and H100:
  the FA2 paper's figures, rows fa2fig-*-fb-c-hd128-s{2048,4096,8192}-fa2);
* otherwise derived: the family's forward (causal) and backward (non-causal, the only published)
  rates relative to FlashAttention-2's on the same GPU and shapes (FA3 paper tables, cuDNN 9.1
  rows), combined with weights 1 : 2.5 (backward does 2.5x the forward FLOPs), times FA2's
  measured fwd+bwd causal rate.

Run: python benchmarks/kernel_priors.py [path/to/kernels.csv]
"""

from __future__ import annotations

import sys

import pandas as pd

KERNELS = "../shared/reference/kernels.csv"
SEQ = (2048, 4096, 8192)


def _mean(d: pd.DataFrame, impl: str, gpu: str, direction: str, causal: int, hd: int = 128) -> tuple[float, list]:
    rows = d[(d.implementation == impl) & (d.gpu == gpu) & (d.direction == direction) & (d.causal == causal)
             & (d.head_dim == hd) & d.seq_len.isin(SEQ) & d.fraction_of_peak.notna()]
    return float(rows.fraction_of_peak.mean()), rows.case_id.tolist()


def _ratio(d: pd.DataFrame, impl: str, gpu: str) -> tuple[float, list]:
    """The family's rate relative to FA2 on the same GPU: forward causal and backward, FLOP-weighted."""
    f, fid = _mean(d, impl, gpu, "fwd", 1)
    f2, f2id = _mean(d, "FlashAttention-2", gpu, "fwd", 1)
    b, bid = _mean(d, impl, gpu, "bwd", 0)
    b2, b2id = _mean(d, "FlashAttention-2", gpu, "bwd", 0)
    # time-weighted: (1 + 2.5) / (1/f + 2.5/b), for the family and for FA2
    fam = 3.5 / (1 / f + 2.5 / b)
    fa2 = 3.5 / (1 / f2 + 2.5 / b2)
    return fam / fa2, fid + bid + f2id + b2id


def priors(path: str = KERNELS) -> dict[str, dict[str, tuple[float, str]]]:
    d = pd.read_csv(path)
    d = d[d.kernel_family == "attention"]
    fa2_a100, a_ids = _mean(d, "FlashAttention-2", "a100-80gb-sxm4", "fwd+bwd", 1)
    fa2_h100, h_ids = _mean(d, "FlashAttention-2", "h100-sxm", "fwd+bwd", 1)
    fa3, fa3_ids = _ratio(d, "FlashAttention-3", "h100-sxm")
    cudnn, cu_ids = _ratio(d, "cuDNN fused attention (9.1.1.17)", "h100-sxm")
    b200 = d[(d.implementation == "FlashAttention-2") & (d.gpu == "b200") & (d.direction == "fwd+bwd")]
    fa4 = d[d.implementation.str.startswith("FlashAttention-4") & d.fraction_of_peak.notna()]
    cite = lambda ids: f"{ids[0]} .. ({len(ids)} rows)"  # noqa: E731
    return {
        "flash2": {"ampere": (fa2_a100, f"measured, mean of {', '.join(a_ids)}"),
                   "hopper": (fa2_h100, f"measured, mean of {', '.join(h_ids)}"),
                   "blackwell": (float(b200.fraction_of_peak.mean()),
                                 f"measured fwd+bwd non-causal hd64, mean of {cite(b200.case_id.tolist())}")},
        "flash3": {"hopper": (fa2_h100 * fa3, f"FA2 hopper x FA3/FA2 rate ratio {fa3:.3f} from {cite(fa3_ids)}")},
        "cudnn": {"hopper": (fa2_h100 * cudnn, f"FA2 hopper x cuDNN/FA2 rate ratio {cudnn:.3f} from {cite(cu_ids)}"),
                  "blackwell": (float(fa4.fraction_of_peak.mean()),
                                f"FlashAttention-4 in a B200 training step ({fa4.case_id.iloc[0]}), as the "
                                "Blackwell fused kernel")},
        "sdpa": {"ampere": (fa2_a100, "PyTorch SDPA dispatches bf16 hd<=256 to its FlashAttention-2 backend"),
                 "hopper": (fa2_h100, "as ampere: SDPA's FlashAttention-2 backend"),
                 "blackwell": (float(b200.fraction_of_peak.mean()), "as flash2 on blackwell")},
    }


if __name__ == "__main__":
    for family, gens in priors(*sys.argv[1:]).items():
        for gen, (value, why) in gens.items():
            print(f"{family:7s} {gen:10s} {value:.3f}  {why}")
