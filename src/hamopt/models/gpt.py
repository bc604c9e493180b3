r"""A GPT-style causal transformer with optionally symmetry-broken attention.

Architecture (pre-norm, GPT-2 layout): token embedding + **learned absolute position
embedding** → ``n_layer`` blocks ``x ← x + Attn(LN(x)); x ← x + MLP(LN(x))`` → final LayerNorm →
linear head tied to the token embedding. Learned absolute positions are chosen because they
leave the attention's rotation symmetry intact: rotary embeddings (RoPE) rotate q and k in fixed
2-D planes per position, which commutes only with rotations that preserve those planes, so the
full ``O(d)`` symmetry (and its Noether charge) would be reduced to a subgroup.

Attention per head h (head dimension ``d = width / n_head``), packed as one ``qkv`` Linear of
shape ``(3·width, width)`` and an output Linear ``proj`` of shape ``(width, width)``::

    q = W_Q,h x + b_q,h (+ bQ)       k = W_K,h x + b_k,h       v = W_V,h x + b_v,h (+ bV)
    out = W_O concat_h(softmax(q·k/√d + causal mask) v) + b_O

Variants (``attention=``):

* ``"symmetric"``: no extra bias. Scores are invariant under ``W_Q,h → R W_Q,h, W_K,h → R W_K,h``
  and the output under ``W_V,h → R W_V,h, W_O,h → W_O,h Rᵀ`` (R orthogonal on the head axis;
  learned biases rotate with their rows).
* ``"bq"``: an unlearned query bias ``bQ = mean_Q + std_Q ⊙ z`` (``z ~ N(0, I_d)``), one draw per
  layer per batch, shared by all heads, all positions and all sequences of the batch.
* ``"bq+bv"``: also a value bias ``bV = mean_V + std_V ⊙ z`` added to every value before
  attention (rows of the attention sum to 1, so it adds ``W_O bV`` to the output).

The biases are not parameters (no gradient, not in any optimiser). Published defaults:
``mean_Q = 0.5``, ``std_Q = linspace(0.05, 0.15, d)``, ``mean_V = 0.5``, ``std_V = 0.05``.
In ``eval()`` mode they sit at their means. In training mode :meth:`GPT.forward` draws a fresh
sample from the model's own seeded generator unless one is passed; an optimiser that evaluates
the same batch twice (Leapfrog in exact mode, the energy tracker's loss-after pass) must pass the
same :class:`AttentionBiases` to both calls — draw it with :meth:`GPT.draw_biases`.

Attention itself is ``torch.nn.functional.scaled_dot_product_attention(..., is_causal=True)``
for every variant: the biases are added to q and v before the call, so all fused kernels apply.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ATTENTION_VARIANTS",
    "ACTIVATIONS",
    "PRESETS",
    "AttentionBiases",
    "CausalSelfAttention",
    "GPT",
    "GPTConfig",
    "MLP",
    "build_gpt",
    "gpt_config",
]

ATTENTION_VARIANTS = ("symmetric", "bq", "bq+bv")
ACTIVATIONS = ("gelu", "relu", "prelu")


def _std_pair(name: str, value: Any) -> tuple[float, float]:
    """A std given as a number (constant) or a (low, high) pair (``linspace(low, high, d)``)."""
    if isinstance(value, bool):
        raise TypeError(
            f"{name} must be a number >= 0 or a pair (low, high) of numbers >= 0; got {value!r}"
        )
    if isinstance(value, (int, float)):
        pair = (float(value), float(value))
    else:
        try:
            low, high = (float(v) for v in value)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} must be a number >= 0 or a pair (low, high) of numbers >= 0; got {value!r}"
            ) from None
        pair = (low, high)
    if not all(math.isfinite(v) and v >= 0.0 for v in pair):
        raise ValueError(f"{name} must be finite and >= 0 (a standard deviation); got {value!r}")
    return pair


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return value


@dataclass(frozen=True)
class GPTConfig:
    """Shape and options of a :class:`GPT`. Validated on construction (errors name the field).

    ``bq_std``/``bv_std`` are ``(low, high)``: the per-dimension std is ``linspace(low, high, d)``
    (``low == high`` gives a constant std); a single number is accepted and means constant.
    """

    vocab_size: int = 256
    context: int = 128
    n_layer: int = 4
    n_head: int = 4
    width: int = 128
    mlp_ratio: int = 4
    activation: str = "gelu"
    attention: str = "symmetric"
    bq_mean: float = 0.5
    bq_std: tuple[float, float] = (0.05, 0.15)
    bv_mean: float = 0.5
    bv_std: tuple[float, float] = (0.05, 0.05)
    linear_bias: bool = True
    dropout: float = 0.0
    tie_weights: bool = True
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context", "n_layer", "n_head", "width", "mlp_ratio"):
            _positive_int(name, getattr(self, name))
        if self.width % self.n_head != 0:
            raise ValueError(
                f"width={self.width} must be divisible by n_head={self.n_head} "
                f"(head dimension = width / n_head)"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}; "
                f"got {self.activation!r}"
            )
        if self.attention not in ATTENTION_VARIANTS:
            raise ValueError(
                f"attention must be one of {', '.join(map(repr, ATTENTION_VARIANTS))}; "
                f"got {self.attention!r}"
            )
        object.__setattr__(self, "bq_std", _std_pair("bq_std", self.bq_std))
        object.__setattr__(self, "bv_std", _std_pair("bv_std", self.bv_std))
        for name in ("bq_mean", "bv_mean"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number; got {v!r}")
            object.__setattr__(self, name, float(v))
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")
        if not (
            isinstance(self.init_std, (int, float))
            and math.isfinite(self.init_std)
            and self.init_std > 0
        ):
            raise ValueError(f"init_std must be finite and > 0; got {self.init_std!r}")

    @property
    def head_dim(self) -> int:
        return self.width // self.n_head

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, GPTConfig] = {
    # CPU: 4 layers of width 128, byte vocabulary; 0.84M parameters.
    "tiny": GPTConfig(vocab_size=256, context=128, n_layer=4, n_head=4, width=128),
    # GPU: GPT-2 small shape, context 512, GPT-2 vocabulary padded to a multiple of 64.
    "124m": GPTConfig(vocab_size=50304, context=512, n_layer=12, n_head=12, width=768),
}


def gpt_config(preset: str = "tiny", **overrides: Any) -> GPTConfig:
    """A preset's :class:`GPTConfig` with fields replaced by ``overrides``."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(map(repr, PRESETS))}; got {preset!r}")
    unknown = set(overrides) - set(GPTConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown GPTConfig field(s): {', '.join(sorted(unknown))}")
    return replace(PRESETS[preset], **overrides)


@dataclass(frozen=True)
class AttentionBiases:
    """One draw of the unlearned biases: ``bq`` and ``bv`` of shape ``(n_layer, d)``, or None."""

    bq: Tensor | None
    bv: Tensor | None


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a packed ``qkv`` projection (see module docstring).

    Head ``h`` owns rows ``[h·d, (h+1)·d)`` of each of the Q, K, V blocks of ``qkv.weight`` (the
    blocks start at rows 0, width, 2·width) and columns ``[h·d, (h+1)·d)`` of ``proj.weight``.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.width = cfg.width
        self.head_dim = cfg.head_dim
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width, bias=cfg.linear_bias)
        self.proj = nn.Linear(cfg.width, cfg.width, bias=cfg.linear_bias)

    def forward(self, x: Tensor, bq: Tensor | None = None, bv: Tensor | None = None) -> Tensor:
        b, t, w = x.shape
        q, k, v = self.qkv(x).split(w, dim=2)
        shape = (b, t, self.n_head, self.head_dim)
        q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))  # (B, H, T, d)
        if bq is not None:
            q = q + bq.to(q.dtype)
        if bv is not None:
            v = v + bv.to(v.dtype)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(b, t, w))


class MLP(nn.Module):
    """``proj(act(fc(x)))`` with hidden width ``mlp_ratio · width``. ReLU and PReLU (one shared
    slope) are positively homogeneous, so each hidden unit has a rescale symmetry."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.width
        self.fc = nn.Linear(cfg.width, hidden, bias=cfg.linear_bias)
        self.activation = cfg.activation
        self.act = {"gelu": nn.GELU(), "relu": nn.ReLU(), "prelu": nn.PReLU()}[cfg.activation]
        self.proj = nn.Linear(hidden, cfg.width, bias=cfg.linear_bias)
        self.drop = nn.Dropout(cfg.dropout)

    @property
    def homogeneous(self) -> bool:
        return self.activation in ("relu", "prelu")

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.width)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.width)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, bq: Tensor | None, bv: Tensor | None) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x), bq, bv))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Pre-norm causal transformer language model (see the module docstring).

    Args:
        config: a :class:`GPTConfig` (see :data:`PRESETS` and :func:`gpt_config`).
        seed: seeds both the weight initialisation and the generator of the attention biases.

    ``forward(idx, targets=None, *, biases=None)`` returns ``(logits, loss)``; ``loss`` is the mean
    cross-entropy in nats per token (None without targets).
    """

    def __init__(self, config: GPTConfig, *, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        cfg = config
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos_emb = nn.Embedding(cfg.context, cfg.width)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.tok_emb.weight
        d = cfg.head_dim
        self.register_buffer("bq_mean", torch.full((d,), cfg.bq_mean), persistent=False)
        self.register_buffer("bq_std", torch.linspace(*cfg.bq_std, d), persistent=False)
        self.register_buffer("bv_mean", torch.full((d,), cfg.bv_mean), persistent=False)
        self.register_buffer("bv_std", torch.linspace(*cfg.bv_std, d), persistent=False)
        self.bias_generator = torch.Generator().manual_seed(int(seed) + 0x5EED)
        self._init_weights(seed)

    def _init_weights(self, seed: int) -> None:
        """GPT-2 initialisation: N(0, init_std) weights, zero biases, LayerNorm (1, 0); residual
        output projections N(0, init_std/√(2 n_layer))."""
        g = torch.Generator().manual_seed(int(seed))
        std = self.config.init_std
        resid_std = std / math.sqrt(2 * self.config.n_layer)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("proj.weight"):
                    p.copy_(torch.randn(p.shape, generator=g) * resid_std)
                elif p.ndim >= 2:
                    p.copy_(torch.randn(p.shape, generator=g) * std)
                elif ".ln" in name or name.startswith("ln_f"):
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif name.endswith("act.weight"):
                    p.fill_(0.25)  # PReLU's default slope
                else:
                    p.zero_()

    # ------------------------------------------------------------------ biases
    def draw_biases(self, generator: torch.Generator | None = None) -> AttentionBiases:
        """One training-batch draw of the unlearned biases (None for absent ones).

        Uses ``generator`` or the model's own seeded ``bias_generator``; the draw happens on the
        CPU (so it is bit-identical on every device) and is moved to the model's device.
        """
        cfg = self.config
        if cfg.attention == "symmetric":
            return AttentionBiases(None, None)
        gen = generator if generator is not None else self.bias_generator
        shape = (cfg.n_layer, cfg.head_dim)
        dev = self.bq_mean.device
        zq = torch.randn(shape, generator=gen, dtype=torch.float64)
        bq = (self.bq_mean.double().cpu() + self.bq_std.double().cpu() * zq).to(dev)
        bv = None
        if cfg.attention == "bq+bv":
            zv = torch.randn(shape, generator=gen, dtype=torch.float64)
            bv = (self.bv_mean.double().cpu() + self.bv_std.double().cpu() * zv).to(dev)
        return AttentionBiases(bq, bv)

    def mean_biases(self) -> AttentionBiases:
        """The biases at their means (what eval mode uses)."""
        cfg = self.config
        if cfg.attention == "symmetric":
            return AttentionBiases(None, None)
        bq = self.bq_mean.expand(cfg.n_layer, -1)
        bv = self.bv_mean.expand(cfg.n_layer, -1) if cfg.attention == "bq+bv" else None
        return AttentionBiases(bq, bv)

    # ------------------------------------------------------------------ forward
    def forward(
        self, idx: Tensor, targets: Tensor | None = None, *, biases: AttentionBiases | None = None
    ) -> tuple[Tensor, Tensor | None]:
        if idx.ndim != 2:
            raise ValueError(f"idx must have shape (batch, time); got {tuple(idx.shape)}")
        b, t = idx.shape
        if t > self.config.context:
            raise ValueError(
                f"sequence length {t} exceeds the model's context={self.config.context}"
            )
        if biases is None:
            biases = self.draw_biases() if self.training else self.mean_biases()
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        for i, block in enumerate(self.blocks):
            bq = None if biases.bq is None else biases.bq[i]
            bv = None if biases.bv is None else biases.bv[i]
            x = block(x, bq, bv)
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def num_parameters(self) -> int:
        """Trainable parameters, counting a tied embedding once."""
        return sum(p.numel() for p in self.parameters())

    def attention_modules(self) -> list[CausalSelfAttention]:
        return [blk.attn for blk in self.blocks]

    def mlp_modules(self) -> list[MLP]:
        return [blk.mlp for blk in self.blocks]


def build_gpt(preset: str = "tiny", *, seed: int = 0, **overrides: Any) -> GPT:
    """Build a :class:`GPT` from a preset name (``"tiny"``, ``"124m"``) and field overrides."""
    return GPT(gpt_config(preset, **overrides), seed=seed)


def _registry_builder(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    width: int | None,
    depth: int | None,
    activation: str | None,
) -> GPT:
    """``build_model("gpt", ...)``: vocabulary = ``num_classes``, context = ``input_shape[0]``,
    ``width`` (default 128, 4 heads when divisible by 4, else 1), ``depth`` = layers (default 4).
    The seed comes from the global RNG, which :func:`~hamopt.models.build_model` seeds."""
    w = 128 if width is None else width
    seed = int(torch.randint(0, 2**62, (1,)).item())
    return build_gpt(
        "tiny",
        seed=seed,
        vocab_size=num_classes,
        context=int(input_shape[0]),
        width=w,
        n_head=4 if w % 4 == 0 else 1,
        n_layer=4 if depth is None else depth,
        activation=activation or "gelu",
    )


def _register() -> None:
    from .builder import MODEL_BUILDERS, register_model

    if "gpt" not in MODEL_BUILDERS:
        register_model("gpt", _registry_builder)


_register()
