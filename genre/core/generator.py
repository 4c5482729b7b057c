"""The GenRe generator: an encoder-decoder transformer that models Q(x+ | x) one feature at a time.

Both sequences are a label token followed by the d features (encoded into [0, 1]). Every position embeds
its scalar with its own small MLP and adds a learned positional embedding. The decoder is causal and, at
position t, outputs a distribution over `n_bins` bins for feature t. Training uses a soft-binned
cross-entropy: the target of feature t is a Gaussian kernel (sigma = 1 / n_bins) around its true value.

Attention and the decoder layers are written out here (rather than `torch.nn.Transformer`) so that the
sampler can keep a key/value cache and add one token per step (`Generator.step`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from genre.core import bins, files

Cache = list[tuple[torch.Tensor, torch.Tensor]]  # per decoder layer: self-attention (keys, values)


@dataclass(frozen=True)
class GeneratorConfig:
    d: int  # number of features
    n_bins: int = 50  # the paper's bins per feature
    emb: int = 64  # the paper uses 32 with 16 + 16 layers; wider and shallower trains far faster on a CPU
    heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 3
    ff: int = 128  # hidden width of each block's MLP
    value_hidden: int = 32  # hidden width of each position's scalar-value MLP
    seed: int = 0  # initial weights


class ValueEmbedding(nn.Module):
    """Position p embeds its scalar with its own MLP 1 -> value_hidden -> emb (all positions in one einsum)."""

    def __init__(self, positions: int, hidden: int, emb: int):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(positions, hidden))
        self.b1 = nn.Parameter(torch.randn(positions, hidden) * 0.1)
        self.w2 = nn.Parameter(torch.randn(positions, hidden, emb) * hidden**-0.5)
        self.b2 = nn.Parameter(torch.zeros(positions, emb))

    def forward(self, values: torch.Tensor, start: int = 0) -> torch.Tensor:
        # values (B, T) hold positions start .. start + T - 1
        sl = slice(start, start + values.shape[1])
        hidden = F.gelu(values[..., None] * self.w1[sl] + self.b1[sl])  # (B, T, H)
        return torch.einsum("bth,the->bte", hidden, self.w2[sl]) + self.b2[sl]  # (B, T, E)


@dataclass
class Shared:
    """U distinct decoding rows of a batch of m memories x g rows (g consecutive rows per memory): row u
    stands for the rows at (memory[u], row[u]), where its cross-attention is computed. `buffer` keeps zeroed
    work tensors for one decoding call (rows not in use keep stale but finite values, which no row reads)."""

    memory: torch.Tensor  # (U,) long
    row: torch.Tensor  # (U,) long, in 0 .. g - 1
    g: int
    scratch: dict = field(default_factory=dict)
    _places: dict = field(default_factory=dict)

    def places(self, heads: int) -> torch.Tensor:
        """(U heads,) row u's place for each head in an (m, heads, g, .) tensor viewed as (m heads g, .)."""
        if heads not in self._places:
            head = torch.arange(heads)
            self._places[heads] = ((self.memory[:, None] * heads + head) * self.g + self.row[:, None]).reshape(-1)
        return self._places[heads]

    def buffer(self, owner: nn.Module, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        key = (id(owner), name)
        if key not in self.scratch:
            self.scratch[key] = torch.zeros(shape)
        return self.scratch[key]


class Attention(nn.Module):
    def __init__(self, emb: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(emb, emb)
        self.kv = nn.Linear(emb, 2 * emb)
        self.out = nn.Linear(emb, emb)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, E = x.shape
        return x.view(B, T, self.heads, E // self.heads).transpose(1, 2)  # (B, H, T, E/H)

    @staticmethod
    def _causal(tq: int, tk: int, device: torch.device) -> torch.Tensor:
        return torch.ones(tq, tk, dtype=torch.bool, device=device).triu(1 + tk - tq)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = _linear(self.kv, x).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                shared: "Shared | None" = None) -> torch.Tensor:
        """x (B, T, E) queries against keys and values (B or m, H, Tk, D) -> (B, T, E); with `shared`, x holds
        U distinct decoding rows of m memories x g rows (see `Shared`)."""
        if shared is not None:
            return self._attend_shared(x, k, v, shared)
        return _linear(self.out, self._attend(self._split(_linear(self.q, x)), k, v, causal))

    def _attend_shared(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shared: "Shared") -> torch.Tensor:
        """The grouped cross-attention of `_attend` for U distinct rows, each computed at the place
        (memory f, row j) one of its rows has in the m x g layout, so that its result is that row's, bit for
        bit; the softmax, by far the dearest step over so few keys, runs on the U rows alone."""
        m, H, Tk, D = k.shape
        at = shared.places(H)  # (U H,) rows of the (m H g, .) layout
        q = shared.buffer(self, "q", (m, H, shared.g, D))  # as `_attend` lays the queries out
        q.view(-1, D).index_copy_(0, at, _linear(self.q, x).view(-1, D))
        att = (q @ k.transpose(-2, -1)) * D**-0.5  # (m, H, g, Tk)
        p = shared.buffer(self, "p", (m, H, shared.g, Tk))
        p.view(-1, Tk).index_copy_(0, at, att.view(-1, Tk).index_select(0, at).softmax(-1))
        y = (p @ v).view(-1, D).index_select(0, at)  # (U H, D)
        return _linear(self.out, y.view(-1, 1, H * D))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
        """q (B, H, Tq, D) -> attention output (B, Tq, E), before the output projection."""
        B, H, T, D = q.shape
        if T == 1 and k.shape[0] != B:
            # Grouped: B = m * g queries, g consecutive rows sharing one of m key sets (the k samples of a
            # factual share its encoder memory). One (g x D) @ (D x Tk) matmul per factual and head reads
            # each memory once instead of broadcasting it over the g samples.
            m = k.shape[0]
            qg = q.view(m, B // m, H, D).transpose(1, 2)  # (m, H, g, D)
            att = (qg @ k.transpose(-2, -1)) * D**-0.5  # (m, H, g, Tk)
            y = (att.softmax(-1) @ v).transpose(1, 2)  # (m, g, H, D)
            return y.reshape(B, 1, H * D)
        if T == 1 and not causal:
            # One query per row (a decoding step): broadcast multiply-and-sum beats B * H tiny batched
            # matmuls, which spend their time copying k into matmul layout.
            att = (q * k).sum(-1, keepdim=True) * D**-0.5  # (B, H, Tk, 1)
            y = (att.softmax(2) * v).sum(2, keepdim=True)  # (B, H, 1, D)
            return y.transpose(1, 2).reshape(B, 1, H * D)
        # Plain matmuls: with at most ~22 tokens this is several times faster on a CPU than the fused
        # scaled_dot_product_attention kernel, whose tiling only pays off on long sequences.
        att = (q @ k.transpose(-2, -1)) * D**-0.5  # (B, H, Tq, Tk)
        if causal:
            att = att.masked_fill(self._causal(T, k.shape[2], att.device), float("-inf"))
        y = att.softmax(-1) @ v  # (B, H, Tq, D)
        return y.transpose(1, 2).reshape(B, T, H * D)


def _mlp(emb: int, ff: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(emb, ff), nn.GELU(), nn.Linear(ff, emb))


# The modules' own kernels called directly: a decoding step makes ~50 such calls per layer on a few rows, and
# nn.Module's call machinery (hooks, dispatch) cost more than some of the kernels. Same kernels, same numbers.
def _linear(m: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, m.weight, m.bias)


def _norm(m: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)


def _mlp_apply(mlp: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    return _linear(mlp[2], F.gelu(_linear(mlp[0], x)))


class EncoderLayer(nn.Module):
    """Pre-norm block: it trains stably at a higher learning rate than post-norm, which the CPU budget needs."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.emb), nn.LayerNorm(cfg.emb)
        self.attn = Attention(cfg.emb, cfg.heads)
        self.mlp = _mlp(cfg.emb, cfg.ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _norm(self.ln1, x)
        x = x + self.attn.forward(h, *self.attn.keys_values(h), causal=False)
        return x + _mlp_apply(self.mlp, _norm(self.ln2, x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(cfg.emb) for _ in range(3))
        self.self_attn = Attention(cfg.emb, cfg.heads)
        self.cross_attn = Attention(cfg.emb, cfg.heads)
        self.mlp = _mlp(cfg.emb, cfg.ff)

    def forward(
        self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor],
        past: tuple[torch.Tensor, torch.Tensor] | None = None, t: int = 0,
        shared: "Shared | None" = None, tail: bool = True,
    ) -> torch.Tensor:
        """Whole sequence when `past` is None (causal). Else x is the one token at position t and `past` the
        layer's preallocated (B, H, d, D) key and value buffers: its key and value are written at t and it
        attends to positions 0 .. t (no mask needed). `shared` goes to the cross-attention (see `Shared`);
        `tail=False` stops once the keys and values are written (their output is not needed)."""
        h = _norm(self.ln1, x)
        k, v = self.self_attn.keys_values(h)
        if past is not None:
            past[0][:, :, t : t + 1], past[1][:, :, t : t + 1] = k, v
            if not tail:
                return x
            k, v = past[0][:, :, : t + 1], past[1][:, :, : t + 1]
        x = x + self.self_attn.forward(h, k, v, causal=past is None)
        x = x + self.cross_attn.forward(_norm(self.ln2, x), *memory_kv, causal=False, shared=shared)
        return x + _mlp_apply(self.mlp, _norm(self.ln3, x))


class Generator(nn.Module):
    """Q(x+ | x) as d categorical distributions over bins, decoded left to right."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = cfg = config
        # Seeded initial weights without touching the caller's global random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.src_value = ValueEmbedding(cfg.d + 1, cfg.value_hidden, cfg.emb)
            self.tgt_value = ValueEmbedding(cfg.d, cfg.value_hidden, cfg.emb)  # label + first d-1 features
            self.src_pos = nn.Parameter(torch.randn(cfg.d + 1, cfg.emb) * 0.02)
            self.tgt_pos = nn.Parameter(torch.randn(cfg.d, cfg.emb) * 0.02)
            self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
            self.enc_ln = nn.LayerNorm(cfg.emb)
            self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
            self.dec_ln = nn.LayerNorm(cfg.emb)
            # One output layer per feature: each feature's distribution has its own shape.
            self.head_w = nn.Parameter(torch.randn(cfg.d, cfg.emb, cfg.n_bins) * cfg.emb**-0.5)
            self.head_b = nn.Parameter(torch.zeros(cfg.d, cfg.n_bins))
            self.register_buffer("bins", bins.centres_tensor(cfg.n_bins))  # the grid (see genre.core.bins)

    # ---- pieces shared by training and sampling --------------------------------------------------
    def encode(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """x (B, d), label (B,) in {0, 1} -> memory (B, d + 1, E)."""
        seq = torch.cat([(2 * label - 1)[:, None], x], dim=1)  # labels as -1 / +1, like the paper
        h = self.src_value(seq) + self.src_pos
        for layer in self.encoder:
            h = layer.forward(h)
        return _norm(self.enc_ln, h)

    def memory_kv(self, memory: torch.Tensor) -> Cache:
        """Cross-attention keys and values of every decoder layer, computed once per factual."""
        # Contiguous once here, rather than re-laid-out by every decoding step that reads them.
        return [tuple(t.contiguous() for t in layer.cross_attn.keys_values(memory)) for layer in self.decoder]

    def _head(self, h: torch.Tensor, start: int) -> torch.Tensor:
        sl = slice(start, start + h.shape[1])
        return torch.einsum("bte,ten->btn", _norm(self.dec_ln, h), self.head_w[sl]) + self.head_b[sl]

    def decode(self, prefix: torch.Tensor, label: torch.Tensor, mem_kv: Cache) -> torch.Tensor:
        """Teacher-forced: prefix (B, t) = first t features of x+ (t < d) -> logits (B, t + 1, n_bins)."""
        seq = torch.cat([(2 * label - 1)[:, None], prefix], dim=1)
        h = self.tgt_value(seq) + self.tgt_pos[: seq.shape[1]]
        for layer, kv in zip(self.decoder, mem_kv):
            h = layer.forward(h, kv)
        return self._head(h, 0)

    def step(self, token: torch.Tensor, t: int, mem_kv: Cache, cache: Cache | None, *,
             shared: "Shared | None" = None, logits: bool = True) -> tuple[torch.Tensor | None, Cache]:
        """One incremental step: the token at decoder position t (the label if t == 0, else feature t - 1)
        -> logits (B, n_bins) of feature t and the cache holding that token's keys and values too.

        `mem_kv` may hold m = B / g memories for B rows (g consecutive rows per memory, e.g. the k samples
        of each factual): cross-attention then reads each memory once for its g rows.
        With `shared`, token and cache hold U distinct prefixes of such a batch (`genre.core.decoding` decodes
        each distinct prefix once), each computed where one of its rows sits (see `Shared`).
        `logits=False` returns None and skips the work only the logits need (the last layer's attention,
        MLP and the head): for a feature that is copied rather than drawn."""
        h = self.tgt_value(token[:, None], start=t) + self.tgt_pos[t]  # (U, 1, E)
        if cache is None:
            cache = self.empty_cache(len(token), h)
        last = len(self.decoder) - 1
        for i, (layer, kv, past) in enumerate(zip(self.decoder, mem_kv, cache)):
            h = layer.forward(h, kv, past, t, shared=shared, tail=logits or i < last)
        return (self._head(h, t)[:, 0] if logits else None), cache

    def empty_cache(self, rows: int, like: torch.Tensor) -> Cache:
        """Every decoder layer's (rows, H, d, D) key and value buffers for all d positions, filled one position
        per step (no re-copying); `like` gives the dtype and device."""
        cfg = self.config
        shape = (rows, cfg.heads, cfg.d, cfg.emb // cfg.heads)
        return [(like.new_empty(shape), like.new_empty(shape)) for _ in self.decoder]

    def traced_step(self, token: torch.Tensor, t: int, mem_kv: Cache, cache: Cache, *,
                    logits: bool = True) -> tuple[torch.Tensor | None, Cache]:
        """`step` (with a cache, without `shared`) through a TorchScript trace of it for these shapes, made on
        first use and kept. It runs the same kernels on the same inputs, so the numbers are the same; it
        saves the Python round trip per operation, which is most of a single query's time (10 rows)."""
        traces = self.__dict__.setdefault("_traces", {})
        key = (t, logits, tuple(token.shape), tuple(mem_kv[0][0].shape), tuple(cache[0][0].shape))
        flat = [x for kv in (*mem_kv, *cache) for x in kv]
        if key not in traces:
            with warnings.catch_warnings():  # TorchScript's deprecation notice
                warnings.simplefilter("ignore")
                traces[key] = torch.jit.trace(_Step(self, t, logits), (token, *flat), check_trace=False)
        out = traces[key](token, *flat)
        return (out if logits else None), cache

    # ---- training ------------------------------------------------------------------------------
    def soft_targets(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (B, d, n_bins) Gaussian kernel around each value, sigma = 1 / n_bins, normalised."""
        sigma = 1.0 / self.config.n_bins
        return torch.softmax(-((x[..., None] - self.bins) ** 2) / (2 * sigma**2), dim=-1)

    def forward(
        self, x: torch.Tensor, x_target: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, d) sources, x_target (B, d) paired targets -> (logits (B, d, n_bins), loss or None).

        The loss is the soft-binned cross-entropy summed over features and averaged over the batch.
        Sources carry the label 0 and targets the favourable label 1.
        """
        B = x.shape[0]
        zeros, ones = x.new_zeros(B), x.new_ones(B)
        mem_kv = self.memory_kv(self.encode(x, zeros))
        if x_target is None:
            return self.decode(x.new_zeros(B, 0), ones, mem_kv), None
        logits = self.decode(x_target[:, :-1], ones, mem_kv)  # (B, d, n_bins)
        loss = -(self.soft_targets(x_target) * logits.log_softmax(-1)).sum(-1).sum(-1).mean()
        return logits, loss

    # ---- checkpoints ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        with files.atomic_path(path) as tmp:  # never leave half a checkpoint under the real name
            torch.save({"config": asdict(self.config), "state_dict": self.state_dict()}, tmp)

    @classmethod
    def load(cls, path: str | Path) -> "Generator":
        ckpt = torch.load(path, weights_only=True)
        model = cls(GeneratorConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
        return model.eval()


class _Step(nn.Module):
    """`Generator.step` at one position with flat tensor arguments, the form `torch.jit.trace` takes."""

    def __init__(self, model: Generator, t: int, logits: bool):
        super().__init__()
        self.model, self.t, self.logits = model, t, logits

    def forward(self, token: torch.Tensor, *flat: torch.Tensor) -> torch.Tensor:
        pairs = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        layers = len(self.model.decoder)
        out, _ = self.model.step(token, self.t, pairs[:layers], pairs[layers:], logits=self.logits)
        return out if self.logits else token
