"""Quantization-aware training of a BitNet b1.58 from scratch (CPU torch).

The network is HF's ``BitNetForCausalLM`` layer for layer (see
:mod:`ternary_core.reference` for the numpy twin). Every BitLinear keeps float master
weights and, in the forward pass, uses absmean-ternary weights and absmax-int8
activations through the straight-through estimator, as in the BitNet papers and
HF's ``AutoBitLinear(online_quant=True)``. ``full_precision=True`` trains the same
shape with plain float linears, the baseline the README compares against.

Training tips from the BitNet b1.58 training note: a higher learning rate than a
float model, warm-up then decay, and weight decay only in the first half.
"""

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .corpus import VAL_FRACTION, split_point
from .errors import TernaryError
from .model.config import BitNetConfig
from .model.file import BitLinearWeights, BitNetModel, save_model
from .quant import quantize_weights


@dataclass
class TrainOptions:
    steps: int = 2000
    batch: int = 32
    seq_len: int = 128
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.05
    seed: int = 0
    threads: int = 0           # 0: torch's default
    full_precision: bool = False
    eval_batches: int = 20
    val_fraction: float = VAL_FRACTION
    checkpoint_every: int = 500  # steps between checkpoints (0: none)
    resume: bool = False         # continue from the checkpoint beside the output

    def check(self, config):
        """Raise :class:`TernaryError` naming the first option out of its domain."""
        for name in ("steps", "batch", "seq_len", "eval_batches"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise TernaryError(f"{name}: expected a positive integer, got {v!r}")
        for name in ("warmup", "seed", "threads", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise TernaryError(f"{name}: expected an integer >= 0, got {v!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise TernaryError(f"lr: expected a finite learning rate > 0, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise TernaryError(f"weight_decay: expected a finite value >= 0, got {self.weight_decay!r}")
        if not 0 < self.val_fraction < 1:
            raise TernaryError(f"val_fraction: expected a value between 0 and 1, got {self.val_fraction!r}")
        if self.seq_len > config.max_position_embeddings:
            raise TernaryError(f"seq_len: {self.seq_len} is longer than the model's context "
                               f"(max_position_embeddings {config.max_position_embeddings})")


def _torch():
    try:
        import torch
    except ImportError:
        raise TernaryError("training needs PyTorch: pip install 'ternary-engine[train]'") from None
    return torch


def build_torch_model(config, full_precision=False):
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class STEWeightQuant(torch.autograd.Function):
        @staticmethod
        def forward(ctx, w):
            scale = 1.0 / w.abs().mean().clamp(min=1e-5)
            return (w * scale).round().clamp(-1, 1) / scale

        @staticmethod
        def backward(ctx, g):
            return g

    class STEActQuant(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            scale = 127 / x.abs().max(dim=-1, keepdim=True).values.clamp(min=1e-5)
            return (x * scale).round().clamp(-128, 127) / scale

        @staticmethod
        def backward(ctx, g):
            return g

    class BitLinear(nn.Linear):
        def forward(self, x):
            if full_precision:
                return F.linear(x, self.weight)
            return F.linear(STEActQuant.apply(x), STEWeightQuant.apply(self.weight))

    class RMSNorm(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))

        def forward(self, x):
            var = x.pow(2).mean(-1, keepdim=True)
            return self.weight * (x * torch.rsqrt(var + config.rms_norm_eps))

    hd, nh, nkv = config.head_dim, config.num_attention_heads, config.num_key_value_heads
    # the MLP's activation (HF's ACT2FN[hidden_act]); the config admits only these
    act = {"relu2": lambda g: F.relu(g).square(), "silu": F.silu}[config.hidden_act]

    def rotate_half(x):
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat((-x2, x1), dim=-1)

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            d, f = config.hidden_size, config.intermediate_size
            self.input_layernorm, self.post_attention_layernorm = RMSNorm(d), RMSNorm(d)
            self.self_attn = nn.Module()
            self.self_attn.q_proj = BitLinear(d, nh * hd, bias=False)
            self.self_attn.k_proj = BitLinear(d, nkv * hd, bias=False)
            self.self_attn.v_proj = BitLinear(d, nkv * hd, bias=False)
            self.self_attn.o_proj = BitLinear(nh * hd, d, bias=False)
            self.self_attn.attn_sub_norm = RMSNorm(d)
            self.mlp = nn.Module()
            self.mlp.gate_proj = BitLinear(d, f, bias=False)
            self.mlp.up_proj = BitLinear(d, f, bias=False)
            self.mlp.down_proj = BitLinear(f, d, bias=False)
            self.mlp.ffn_sub_norm = RMSNorm(f)

        def forward(self, x, cos, sin):
            b, t, _ = x.shape
            a = self.self_attn
            h = self.input_layernorm(x)
            q = a.q_proj(h).view(b, t, nh, hd).transpose(1, 2)
            k = a.k_proj(h).view(b, t, nkv, hd).transpose(1, 2)
            v = a.v_proj(h).view(b, t, nkv, hd).transpose(1, 2)
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
            k = k.repeat_interleave(nh // nkv, dim=1)
            v = v.repeat_interleave(nh // nkv, dim=1)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            o = a.attn_sub_norm(o.transpose(1, 2).reshape(b, t, nh * hd))
            x = x + a.o_proj(o)
            h = self.post_attention_layernorm(x)
            m = self.mlp
            g = act(m.gate_proj(h)) * m.up_proj(h)
            return x + m.down_proj(m.ffn_sub_norm(g))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Module()
            self.model.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
            self.model.layers = nn.ModuleList(Layer() for _ in range(config.num_hidden_layers))
            self.model.norm = RMSNorm(config.hidden_size)
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
            inv = 1.0 / (config.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float) / hd))
            self.register_buffer("inv_freq", inv, persistent=False)
            for mod in self.modules():
                if isinstance(mod, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(mod.weight, std=0.02)

        def forward(self, ids):
            t = ids.shape[1]
            freqs = torch.outer(torch.arange(t, dtype=torch.float), self.inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos()[None, None], emb.sin()[None, None]
            x = self.model.embed_tokens(ids)
            for layer in self.model.layers:
                x = layer(x, cos, sin)
            return self.lm_head(self.model.norm(x))

    return Model()


def export_model(net, config, tokenizer):
    """The trained float master weights -> the project's model (ternary BitLinears)."""
    state = {k: v.detach().float().numpy() for k, v in net.state_dict().items()}
    model = BitNetModel(config, tokenizer)
    for name in config.bitlinear_shapes():
        trits, scale = quantize_weights(state.pop(name + ".weight"))
        model.bitlinears[name] = BitLinearWeights(trits, scale)
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    model.floats = state
    return model


def _lr_at(step, opts):
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    progress = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return opts.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def load_corpus(corpus_path, opts):
    """The corpus as bytes and its train/validation split point, checked so that both
    parts hold a whole sample (``seq_len + 1`` bytes, at two or more start offsets)
    before any step is taken."""
    corpus_path = Path(corpus_path)
    if not corpus_path.is_file():
        raise TernaryError(f"corpus: {corpus_path} is not a file")
    try:
        data = np.frombuffer(corpus_path.read_bytes(), dtype=np.uint8)
    except OSError as exc:
        raise TernaryError(f"corpus: cannot read {corpus_path} ({exc.strerror})") from None
    split = split_point(data.size, opts.val_fraction)
    need = opts.seq_len + 2  # torch.randint(0, n - seq_len - 1) needs n - seq_len - 1 >= 1
    for part, n in (("training", split), ("validation", data.size - split)):
        if n < need:
            raise TernaryError(
                f"corpus: {corpus_path} has {data.size} bytes; its {part} part ({n} bytes, "
                f"{1 - opts.val_fraction if part == 'training' else opts.val_fraction:.0%}) needs at "
                f"least seq_len + 2 = {need}: give a longer corpus or a smaller --seq-len")
    return data, split


def checkpoint_path(out_path):
    return Path(str(out_path) + ".ckpt.safetensors")


CHECKPOINT_FORMAT = "ternary-engine-train-checkpoint-1"
# Options that must match for a resumed run to continue the same run (threads may differ:
# the result then differs in the last bits, as any run with other threads would).
_RESUME_KEYS = ("steps", "batch", "seq_len", "lr", "warmup", "weight_decay", "seed",
                "full_precision", "eval_batches", "val_fraction")


def corpus_digest(data):
    """The SHA-256 of the corpus bytes: a checkpoint continues only on the corpus it began on."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()


def save_checkpoint(path, net, optim, gen, step, loss_avg, history, config, opts, corpus=None):
    """Everything a run needs to continue after ``step`` steps, as safetensors (no pickle):
    the float master weights, AdamW's moments and step counts, the batch sampler's RNG,
    and ``corpus`` (:func:`corpus_digest`)."""
    torch = _torch()
    from safetensors.torch import save

    from .output_file import write_output

    t = {f"net/{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    for i, st in optim.state_dict()["state"].items():
        for k, v in st.items():
            t[f"opt/{i}/{k}"] = v.detach().reshape(-1).contiguous()
    t["rng/batches"] = gen.get_state()
    t["rng/torch"] = torch.get_rng_state()
    meta = {"format": CHECKPOINT_FORMAT, "step": str(step), "loss_avg": json.dumps(loss_avg),
            "history": json.dumps(history), "config": json.dumps(config.to_dict()),
            "options": json.dumps({k: getattr(opts, k) for k in _RESUME_KEYS})}
    if corpus:
        meta["corpus_sha256"] = corpus
    write_output(path, save(t, metadata=meta), what="checkpoint")


def load_checkpoint(path, net, optim, gen, config, opts, corpus=None):
    """Restore a :func:`save_checkpoint`; return ``(step, loss_avg, history)``. A
    checkpoint made on another corpus than ``corpus`` (its digest) is refused."""
    torch = _torch()
    from .formats.safetensors import read_safetensors

    if not path.is_file():
        raise TernaryError(f"--resume: no checkpoint at {path}")
    meta, arrays = read_safetensors(path, what=f"--resume: {path}")
    t = {k: torch.from_numpy(a) for k, a in arrays.items()}
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise TernaryError(f"--resume: {path} is not a checkpoint of this trainer")
    try:
        saved_cfg, saved_opts = json.loads(meta["config"]), json.loads(meta["options"])
        step, loss_avg, history = int(meta["step"]), json.loads(meta["loss_avg"]), json.loads(meta["history"])
    except (KeyError, ValueError) as exc:
        raise TernaryError(f"--resume: {path} has bad metadata ({exc})") from None
    if saved_cfg != config.to_dict():
        diff = next(k for k in saved_cfg.keys() | config.to_dict().keys()
                    if saved_cfg.get(k) != config.to_dict().get(k))
        raise TernaryError(f"--resume: {path} is of a model with {diff}={saved_cfg.get(diff)!r}, "
                           f"not {config.to_dict().get(diff)!r}")
    for k in _RESUME_KEYS:
        if saved_opts.get(k) != getattr(opts, k):
            raise TernaryError(f"--resume: {path} was made with {k}={saved_opts.get(k)!r}, not "
                               f"{getattr(opts, k)!r}; give the same options to continue it")
    if not 0 < step < opts.steps:
        raise TernaryError(f"--resume: {path} is at step {step}, outside 1..{opts.steps - 1}")
    saved_corpus = meta.get("corpus_sha256")
    if corpus and saved_corpus and saved_corpus != corpus:
        raise TernaryError(f"--resume: {path} was made on another corpus (SHA-256 "
                           f"{saved_corpus[:12]}..., this --corpus {corpus[:12]}...); give the "
                           "same --corpus to continue it")
    try:
        net.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("net/")})
        state = optim.state_dict()
        shapes = {i: p.shape for i, p in enumerate(q for g in optim.param_groups for q in g["params"])}
        state["state"] = {}
        for key, v in t.items():
            if key.startswith("opt/"):
                _, i, name = key.split("/")
                state["state"].setdefault(int(i), {})[name] = (
                    v.reshape(()) if name == "step" else v.reshape(shapes[int(i)]))
        optim.load_state_dict(state)
        gen.set_state(t["rng/batches"])
        torch.set_rng_state(t["rng/torch"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise TernaryError(f"--resume: {path} does not fit this model ({str(exc).splitlines()[0]})") from None
    return step, loss_avg, history


def train(corpus_path, out_path, config=None, opts=None, log=None):
    """Train on a text corpus (byte-level tokens) and save the model; return a report dict.

    Everything that can be checked is checked before the first step: the options, the
    corpus against its split and sequence length, and the output paths (the model, its
    ``.json`` report and the checkpoint). With ``opts.checkpoint_every`` a checkpoint
    ``OUT.ckpt.safetensors`` is written every that many steps; ``opts.resume`` continues
    from it, and gives the same model as an uninterrupted run.
    """
    torch = _torch()
    log = log or sys.stderr
    config = config or BitNetConfig()
    opts = opts or TrainOptions()
    opts.check(config)
    if config.vocab_size != 256:
        raise TernaryError("the trainer's tokenizer is byte-level: vocab_size must be 256")
    data, split = load_corpus(corpus_path, opts)
    digest = corpus_digest(data)
    ckpt = None
    if out_path and not opts.full_precision:
        from .output_file import check_output_path

        for p, what in ((out_path, "-o"), (str(out_path) + ".json", "-o (its .json report)")):
            check_output_path(p, what=what, inputs=[corpus_path])
        ckpt = checkpoint_path(out_path)
        if opts.checkpoint_every or opts.resume:
            check_output_path(ckpt, what="checkpoint", inputs=[corpus_path])
        if opts.resume and not ckpt.is_file():
            raise TernaryError(f"--resume: no checkpoint at {ckpt}")
    elif opts.resume and opts.full_precision:
        raise TernaryError("--resume: --full-precision runs keep no checkpoint, so there is "
                           "nothing to resume")
    elif opts.resume:
        raise TernaryError("--resume needs an output model (-o)")
    train_data = torch.from_numpy(data[:split].astype(np.int64))
    val_data = torch.from_numpy(data[split:].astype(np.int64))
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)

    def batch(src, g):
        idx = torch.randint(0, src.numel() - opts.seq_len - 1, (opts.batch,), generator=g)
        chunk = torch.stack([src[i:i + opts.seq_len + 1] for i in idx.tolist()])
        return chunk[:, :-1], chunk[:, 1:]

    net = build_torch_model(config, opts.full_precision)
    decay = [p for n, p in net.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in net.named_parameters() if p.dim() < 2]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": opts.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}],
                              lr=opts.lr, betas=(0.9, 0.95))

    def evaluate():
        net.eval()
        g = torch.Generator().manual_seed(12345)
        with torch.no_grad():
            losses = [torch.nn.functional.cross_entropy(net(x).flatten(0, 1), y.flatten()).item()
                      for x, y in (batch(val_data, g) for _ in range(opts.eval_batches))]
        net.train()
        return float(np.mean(losses))

    history = []
    loss_avg = None
    first = 0
    if opts.resume:  # its refusals come before any output
        first, loss_avg, history = load_checkpoint(ckpt, net, optim, gen, config, opts,
                                                   corpus=digest)
    kind = "full precision" if opts.full_precision else "BitNet b1.58 QAT"
    print(f"training {kind}: {sum(p.numel() for p in net.parameters()):,} parameters, "
          f"{opts.steps} steps of {opts.batch}x{opts.seq_len} bytes", file=log, flush=True)
    if opts.resume:
        print(f"resuming from {ckpt} at step {first}", file=log, flush=True)
    t0 = time.time()
    for step in range(first, opts.steps):
        for group in optim.param_groups:
            group["lr"] = _lr_at(step, opts)
            if group["weight_decay"] and step >= opts.steps // 2:
                group["weight_decay"] = 0.0
        x, y = batch(train_data, gen)
        loss = torch.nn.functional.cross_entropy(net(x).flatten(0, 1), y.flatten())
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optim.step()
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        if step % 50 == 0 or step == opts.steps - 1:
            el = time.time() - t0
            eta = el / (step + 1) * (opts.steps - step - 1)
            print(f"  step {step + 1:5d}/{opts.steps}  loss {loss_avg:.4f}  "
                  f"{el:6.0f}s elapsed, ~{eta:.0f}s left", file=log, flush=True)
        if (step + 1) % 500 == 0 or step == opts.steps - 1:
            history.append({"step": step + 1, "train_loss": loss_avg, "val_loss": evaluate()})
        if ckpt and opts.checkpoint_every and (step + 1) % opts.checkpoint_every == 0 \
                and step + 1 < opts.steps:
            save_checkpoint(ckpt, net, optim, gen, step + 1, loss_avg, history, config, opts,
                            digest)
    val = evaluate()
    report = {"kind": kind, "config": config.to_dict(), "options": opts.__dict__,
              "val_loss": val, "seconds": time.time() - t0, "history": history}
    print(f"final validation loss {val:.4f} ({kind}, {report['seconds']:.0f}s)", file=log, flush=True)
    if out_path and not opts.full_precision:
        from .output_file import write_output

        model = export_model(net, config, {"type": "bytes"})
        save_model(out_path, model, what="-o", inputs=[corpus_path])
        report["ternary_params"] = model.ternary_params()
        write_output(str(out_path) + ".json", json.dumps(report, indent=2), what="-o (its .json report)")
        ckpt.unlink(missing_ok=True)  # the run is complete: nothing left to resume
        print(f"saved {out_path}", file=log)
    return report
