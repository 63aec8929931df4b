"""Settings, one frozen dataclass per engine; every default lives here."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AttackConfig:
    """PGD counterexample search."""

    restarts: int = 64          # random starts per input region, run as one batch
    steps: int = 50             # gradient steps per round
    rounds: int = 2             # rounds of restarts (new random starts each round)
    step_fraction: float = 0.25  # first step size as a fraction of the region's half-width
    confirm_top: int = 8        # best candidates re-run with onnxruntime
    samples: int = 65_536       # uniform samples that seed PGD on low-dimensional inputs
    sample_max_dim: int = 16    # ... inputs up to this many dimensions


@dataclass(frozen=True)
class BoundsConfig:
    """Bound propagation: ``ibp``, ``crown`` or ``alpha-crown`` (each runs the ones before), or
    ``lp``/``milp`` (cvxpy with ``solver``) instead of propagation and branching."""

    method: str = "alpha-crown"
    solver: str = "HIGHS"
    alpha_iterations: int = 20
    alpha_lr: float = 0.25
    layer_alpha_iterations: int = 20  # α-CROWN steps per intermediate layer (its unstable neurons' own
                                      # slopes) when plain α-CROWN leaves a case open; 0 turns it off
    layer_alpha_min_inputs: int = 17  # ... only for inputs of at least this size (ReLU-split BaB next)
    layer_alpha_share: float = 0.3    # ... using at most this share of the time left
    max_batch_elements: int = 1 << 26  # cap on elements of one coefficient tensor (memory)
    dtype: str = "float64"       # precision of bounds that decide proofs (float64 | float32)


@dataclass(frozen=True)
class BabConfig:
    """Branch and bound."""

    enabled: bool = True
    strategy: str = "auto"       # auto | input | relu
    batch: int = 0               # sub-domains bounded at once; 0: 256 on the CPU, 2048 on CUDA
    max_domains: int = 200_000   # domain store cap; beyond it the run ends with unknown
    intermediate: str = "crown"  # input split: "crown" or "forward" (cheaper, looser) intermediate bounds
    relu_iterations: int = 20    # α/β optimisation steps per batch of ReLU-split domains
    relu_refresh: bool = True    # ReLU split: recompute each domain's intermediate bounds by CROWN
                                 # under its splits (tighter; costs about one CROWN pass per layer)
    relu_candidates: int = 3     # ReLU split: neurons per domain tried by one bound of both children
                                 # (filtered smart branching); 1 = the best BaBSR-style score alone
    warm_start_mb: int = 1024    # ReLU split: memory for the α/β each open domain keeps for its
                                 # children (bfloat16); past it every domain starts from default slopes
    input_alpha_iterations: int = 10  # α-CROWN steps on the open domains of each input-split batch
    input_branching: str = "strong"  # input split: "strong" (try every dimension) or "smear"
    milp_after: float = 0.5      # input split: share of the time after which open boxes also go to
                                 # the exact MILP (small piecewise-linear nets); >= 1 turns it off

    def batch_on(self, device) -> int:
        """Sub-domains bounded at once on ``device`` (a GPU pays off only on larger batches)."""
        if self.batch > 0:
            return self.batch
        return 2048 if str(device).startswith("cuda") else 256


@dataclass(frozen=True)
class VerifyConfig:
    """Everything :func:`verifier.verify` needs; see each engine's own config."""

    timeout: float = 60.0
    device: str = "cpu"
    seed: int = 0
    proof_margin: float = 1e-6   # a bound must clear 0 by this much to count as a proof
    attack: AttackConfig = field(default_factory=AttackConfig)
    bounds: BoundsConfig = field(default_factory=BoundsConfig)
    bab: BabConfig = field(default_factory=BabConfig)
