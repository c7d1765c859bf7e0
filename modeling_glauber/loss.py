"""The Glauber score-entropy loss (DESIGN §6): the DWDSE of Lou et al. for one Glauber step, computed stably.

With forward rates `q_v = q(v | x_t∖k)`, concrete score `s_v = exp(ℓ_v)/q_v` and denoising ratio
`r_v = 1{v = a}/q_a` (`a = x_{t-1}[k]`, the token before the step):

    Σ_v q_v [s_v − r_v log s_v + K(r_v)]  =  Σ_v exp(ℓ_v)  −  (ℓ_a − log q_a)  +  (−log q_a − 1)
                                            =  Σ_v exp(ℓ_v) − ℓ_a − 1,           K(r) = r (log r − 1).

The three terms are kept separately (the score term, the log-score term and the constant K term) so the reference
enters exactly as in the objective; they cancel to the right-hand side. With `ℓ = log_softmax(logits)`
("normalized") this is the cross-entropy `−log p_θ(a | x∖k, τ)`; with raw logits ("unnormalized") it is the
unnormalised score entropy, minimised by the same kernel.
"""

from __future__ import annotations

import torch

SCORE_PARAMETRIZATIONS = ("normalized", "unnormalized")


def glauber_score_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    reference_logprob_targets: torch.Tensor | None = None,
    score_parametrization: str = "normalized",
) -> torch.Tensor:
    r"""
    Per-example DWDSE loss.

    Args:
        logits: `[N, V]` MASK-INFILL logits of the trained model at τ = t/T (forbidden tokens at -inf).
        targets: `[N]` the token before the step, `a = x_{t-1}[k_t]`.
        reference_logprob_targets: `[N]` `log q(a | x_t∖k)` from the frozen reference; it cancels, so None is allowed.
        score_parametrization: "normalized" (ℓ = log-softmax, the default) or "unnormalized" (ℓ = raw logits).
    """
    if score_parametrization not in SCORE_PARAMETRIZATIONS:
        raise ValueError(f"score_parametrization must be one of {SCORE_PARAMETRIZATIONS}, got {score_parametrization!r}")
    logits = logits.float()
    ell = logits.log_softmax(dim=-1) if score_parametrization == "normalized" else logits
    score_term = ell.exp().sum(dim=-1)
    ell_target = ell.gather(1, targets.unsqueeze(1)).squeeze(1)
    if reference_logprob_targets is None:
        return score_term - ell_target - 1.0
    log_q = reference_logprob_targets.float()
    log_score_term = -(ell_target - log_q)
    entropy_term = -log_q - 1.0
    return score_term + log_score_term + entropy_term


__all__ = ["glauber_score_entropy", "SCORE_PARAMETRIZATIONS"]
