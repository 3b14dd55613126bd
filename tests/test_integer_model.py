"""The whole integer decode (ternary_core/integer): against the float reference on the
shipped model and on a transformers-written checkpoint, score == step bit for bit, the
backend carries every ternary matvec, saturation, determinism and one-line errors."""

import numpy as np
import pytest

from host.generate import default_model_path
from ternary_core.errors import TernaryError
from ternary_core.integer import IntegerRunner, IntegerSampler, compile_model
from ternary_core.model.config import BitNetConfig
from ternary_core.model.file import load_model
from ternary_core.backend import GoldenBackend
from ternary_core.reference import BitNetRunner
from tests.test_model_files import random_model

# Public-domain Shakespeare (Hamlet III.1), 256 bytes (the shipped model's context).
TEXT = (b"To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
        b"The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n"
        b"And by opposing end them. To die: to sleep;\nNo more; and by a sleep to say we end\nTh")


@pytest.fixture(scope="module")
def shipped():
    model = load_model(default_model_path())
    return model, compile_model(model)


def float_logits(model, ids):
    runner = BitNetRunner(model)
    return np.stack([runner.step(int(t)) for t in ids]).astype(np.float64)


def nll(logits, targets):
    z = logits - logits.max(axis=1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -lp[np.arange(targets.size), targets].mean()


def test_score_is_bit_identical_to_stepping(shipped):
    _, im = shipped
    ids = np.frombuffer(TEXT[:48], np.uint8).astype(np.int64)
    runner = IntegerRunner(im)
    stepped = np.stack([runner.step(int(t)) for t in ids])
    assert stepped.dtype == np.int64 and runner.pos == ids.size
    scored, scales = runner.score(ids)
    np.testing.assert_array_equal(scored, stepped)
    assert runner.pos == ids.size and scales.shape == (ids.size,)
    assert np.all(scales == runner.last_logit_scale)


def test_silu_score_is_bit_identical_to_stepping_and_differs_from_relu2(rng):
    from dataclasses import replace

    cfg = BitNetConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                       max_position_embeddings=32, hidden_act="silu")
    model = random_model(rng, cfg)
    ids = rng.integers(0, 256, 20)
    runner = IntegerRunner(compile_model(model))
    stepped = np.stack([runner.step(int(t)) for t in ids])
    np.testing.assert_array_equal(runner.score(ids)[0], stepped)
    model.config = replace(cfg, hidden_act="relu2")      # the same weights, the other GLU
    assert not np.array_equal(IntegerRunner(compile_model(model)).score(ids)[0], stepped)


def test_shipped_model_tracks_the_float_reference(shipped):
    model, im = shipped
    ids = np.frombuffer(TEXT, np.uint8).astype(np.int64)
    ref = float_logits(model, ids)
    runner = IntegerRunner(im)
    logits, scales = runner.score(ids)
    got = logits * scales[:, None]
    agreement = (got.argmax(1) == ref.argmax(1)).mean()
    delta = nll(got[:-1], ids[1:]) - nll(ref[:-1], ids[1:])
    print(f"top-1 agreement {agreement:.4f}, loss delta {delta:+.4f} nats/byte, "
          f"max |logit diff| {np.abs(got - ref).max():.3f} of {np.abs(ref).max():.1f}")
    # the 64 KiB gate (>= 97%, <= +0.02) is measured by `ternary eval` (or `python -m ternary_core.integer.measure`);
    # on this one window the same bounds hold with margin
    assert agreement >= 0.97 and delta <= 0.02
    print(f"residual peak {runner.residual_peak / 2 ** 16:.2f} of 32768")
    assert runner.residual_peak < 1 << 26                     # 5+ bits of headroom: no saturation


# The gate's spread of model statistics (issue 22, item 5): transformers-initialized random
# checkpoints (N(0, 0.02) BitLinears, unit norms), embeddings and lm_head N(0, 1) or
# N(0, 0.02), head_dim 16/32/64/100, context 512, relu2 and silu; small vocab, 2 layers.
# docs/integer-error-analysis.md ("the gate") has each one's agreement over seeds 0-7. The
# checkpoints are fixed (SPREAD_SEED), not one per run: with N(0, 0.02) embeddings the logits'
# std is 0.15-0.27 and nearly every position is a near-tie (the disagreements' float top-2
# margins are under 0.03 logits), so over seeds e002-hd100-relu2 ranges 95.0-97.5%, and a
# per-run seed would now and then draw a model just under the bound, which the gate refuses.
SPREAD_SEED = 0
SPREAD = {
    "e1-hd16-relu2": dict(embed_std=1.0, hidden=64, heads=4, kv=2, hidden_act="relu2"),
    "e002-hd16-silu": dict(embed_std=0.02, hidden=64, heads=4, kv=2, hidden_act="silu"),
    "e1-hd32-silu": dict(embed_std=1.0, hidden=64, heads=2, kv=1, hidden_act="silu"),
    "e002-hd32-relu2": dict(embed_std=0.02, hidden=64, heads=2, kv=1, hidden_act="relu2"),
    "e1-hd64-relu2": dict(embed_std=1.0, hidden=64, heads=1, kv=1, hidden_act="relu2"),
    "e002-hd64-silu": dict(embed_std=0.02, hidden=64, heads=1, kv=1, hidden_act="silu"),
    "e1-hd100-silu": dict(embed_std=1.0, hidden=200, heads=2, kv=1, hidden_act="silu"),
    "e002-hd100-relu2": dict(embed_std=0.02, hidden=200, heads=2, kv=1, hidden_act="relu2"),
}


@pytest.mark.parametrize("case", list(SPREAD))
def test_transformers_checkpoint_top1_agreement(tmp_path, capsys, case):
    """``ternary import`` measures (2,048 positions, 4 windows of context 512) and records
    the integer decode's top-1 agreement with the float reference; on every model of the
    spread it is at least the bound."""
    pytest.importorskip("torch", reason="installed by `make test` (reference extra)")
    pytest.importorskip("transformers", reason="installed by `make test` (reference extra)")
    import time

    from host.cli import main
    from ternary_core.integer.probe import BOUND
    from tests.random_hf_checkpoint import build_checkpoint

    kw = SPREAD[case]
    t0 = time.perf_counter()
    build_checkpoint(tmp_path / "hf", ffn=2 * kw["hidden"], vocab=97, layers=2, ctx=512,
                     init="hf", seed=SPREAD_SEED, **kw)
    out = tmp_path / "m.safetensors"
    assert main(["import", str(tmp_path / "hf"), "-o", str(out), "--probe-positions", "2048"]) == 0
    said = capsys.readouterr().err
    model = load_model(out)
    assert model.config.hidden_act == kw["hidden_act"]
    assert model.config.head_dim == kw["hidden"] // kw["heads"]
    record = model.integer_probe
    print(f"{case}, seed {SPREAD_SEED}: top-1 agreement {record.agreement:.4f} over "
          f"{record.positions} positions ({time.perf_counter() - t0:.1f} s with the build)")
    assert f"over 2,048 probe positions (bound 95%)" in said and "BELOW" not in said
    assert record.positions == 2048 and record.agreement >= BOUND


class CountingBackend(GoldenBackend):
    def prepare(self, model):
        super().prepare(model)
        self.prepared_with, self.calls = model, []

    def run(self, names, x_q):
        self.calls.append(tuple(names))
        return super().run(names, x_q)


def test_every_ternary_matvec_goes_through_the_backend(shipped):
    model, im = shipped
    backend = CountingBackend()
    runner = IntegerRunner(im, backend=backend)
    assert backend.prepared_with is model
    runner.step(65)
    names = [n for call in backend.calls for n in call]
    assert sorted(names) == sorted(model.bitlinears)            # each BitLinear once per token
    assert ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
            "model.layers.0.self_attn.v_proj") in backend.calls  # shared inputs go together
    # score() through a non-golden backend still uses it, row by row, with equal results
    backend.calls.clear()
    logits, _ = runner.score([65, 66, 67])
    assert len(backend.calls) == 3 * 4 * model.config.num_hidden_layers   # qkv, o, gate+up, down
    np.testing.assert_array_equal(logits, IntegerRunner(im).score([65, 66, 67])[0])


def test_a_wrong_backend_changes_the_logits(shipped):
    _, im = shipped

    class Broken(GoldenBackend):
        def run(self, names, x_q):
            return [a + 1 for a in super().run(names, x_q)]

    assert not np.array_equal(IntegerRunner(im, backend=Broken()).step(65), IntegerRunner(im).step(65))


def test_decode_is_deterministic_and_sampling_reproducible(shipped):
    _, im = shipped

    def generate(seed):
        runner, sampler, out = IntegerRunner(im), IntegerSampler(0.9, 20, seed), []
        logits = [runner.step(t) for t in b"ROMEO:"][-1]
        for _ in range(12):
            out.append(sampler(logits))
            logits = runner.step(out[-1])
        return out

    assert generate(3) == generate(3)
    assert generate(3) != generate(4)


def test_residual_saturates_instead_of_wrapping(rng):
    model = random_model(rng, BitNetConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                           max_position_embeddings=16))
    model.floats["model.embed_tokens.weight"] *= 1e6            # far past the Q15.16 range
    im = compile_model(model)
    runner = IntegerRunner(im)
    logits, _ = runner.score(np.arange(16))
    assert logits.min() >= -(1 << 31) and logits.max() < (1 << 31)
    assert runner.residual_peak in ((1 << 31) - 1, 1 << 31)     # it reached the rail
    from ternary_core.integer import ops
    x = ops.embed(im.embed_q[:4], im.embed_scale[:4])
    assert np.abs(x).max() == (1 << 31) - 1 or x.min() == -(1 << 31)


def test_tied_embeddings_share_the_int8_rows(rng):
    model = random_model(rng, BitNetConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                           max_position_embeddings=16, tie_word_embeddings=True))
    im = compile_model(model)
    assert im.head_q is im.embed_q
    ids = rng.integers(0, 256, 16)
    logits, scales = IntegerRunner(im).score(ids)
    ref = float_logits(model, ids)[0]
    # a random model is chaotic (see docs/integer-decode.md); the first position is not,
    # but its top logits can be near-tied (16.30 and 16.43 of a 31.1 range with seed
    # 46437), so the argmax is not the check: the logits follow the float ones (correlation
    # >= 0.995; 0.9984 the least over seeds 0..199) and the integer argmax is a float logit
    # within 3 % of the range of the top (1.3 % the most over those seeds). Rows that
    # were not the embedding's would correlate near 0.
    got = logits[0].argmax()
    assert np.corrcoef(logits[0], ref)[0, 1] >= 0.995
    assert ref.max() - ref[got] <= 0.03 * (ref.max() - ref.min()), (got, ref.argmax())


def test_errors_are_one_line_and_name_the_problem(shipped):
    _, im = shipped
    runner = IntegerRunner(im, max_len=2)
    with pytest.raises(TernaryError, match="token id 256 is outside the vocabulary"):
        runner.step(256)
    runner.step(1)
    runner.step(2)
    with pytest.raises(TernaryError, match="context full"):
        runner.step(3)
    with pytest.raises(TernaryError, match="context full"):
        runner.score([1, 2, 3])
    with pytest.raises(TernaryError, match="token ids"):
        runner.score([])
    with pytest.raises(TernaryError, match="max_len must be"):
        IntegerRunner(im, max_len=im.max_len + 1)


def test_doc_cost_table_matches_the_model(shipped):
    from pathlib import Path

    from ternary_core.integer.cost import decode_costs, markdown_table
    _, im = shipped
    doc = (Path(__file__).parent.parent / "docs" / "integer-decode.md").read_text()
    table = doc.split("<!-- cost-table:begin -->\n")[1].split("\n<!-- cost-table:end -->")[0]
    assert table == markdown_table(im.config)
    # the memory column is the golden model's own arrays
    rows = {r.op.split(" (")[0]: r for r in decode_costs(im.config)}
    assert rows["embedding lookup"].memory_bytes == im.embed_q.size + 3 * im.embed_scale.m.size
    assert rows["lm_head"].memory_bytes == im.head_q.size + 3 * im.head_scale.m.size
    assert rows["RMSNorm + absmax int8 quantizer"].memory_bytes == sum(
        2 * c.gain.size for c in im.norms.values())
    assert rows["RoPE on q and k"].table_bits == 16 * (im.rope_cos.size + im.rope_sin.size)
    runner = IntegerRunner(im)
    kv_bytes = runner.k8.nbytes + runner.v8.nbytes + 3 * (runner.k_scale.m.size + runner.v_scale.m.size)
    assert rows["q/k/v per-head int8 quantizer, KV cache write"].memory_bytes == kv_bytes
    ternary = sum(b.trits.size for b in im.model.bitlinears.values())
    assert rows["ternary matvecs"].ternary_adds == ternary


def test_unit_normal_checkpoint_is_chaotic_even_for_float(tmp_path, seed):
    """Why the agreement gate uses transformers' initialization: with N(0, 1) weights (the
    equivalence test's builder) a 1e-5 relative nudge of the float model's own embeddings
    already moves its argmax, so no integer approximation can track it closely."""
    pytest.importorskip("torch", reason="installed by `make test` (reference extra)")
    pytest.importorskip("transformers", reason="installed by `make test` (reference extra)")
    from host.cli import main
    from tests.test_hf_equivalence import build_hf_checkpoint

    build_hf_checkpoint(tmp_path / "hf", seed % (1 << 31))
    assert main(["import", str(tmp_path / "hf"), "-o", str(tmp_path / "m.safetensors")]) == 0
    model = load_model(tmp_path / "m.safetensors")
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 256, (8, model.config.max_position_embeddings))
    # three independent nudges, pooled: one alone moved no argmax of 512 with some seeds
    nudges = []
    for _ in range(3):
        nudged = load_model(tmp_path / "m.safetensors")
        e = nudged.floats["model.embed_tokens.weight"]
        nudged.floats["model.embed_tokens.weight"] = (
            e * (1 + 1e-5 * rng.standard_normal(e.shape))).astype(np.float32)
        nudges.append(nudged)
    runner = IntegerRunner(compile_model(model))
    same_float = same_int = 0
    for window in ids:
        ref = float_logits(model, window).argmax(1)
        same_float += sum(int((float_logits(n, window).argmax(1) == ref).sum()) for n in nudges)
        same_int += int((runner.score(window)[0].argmax(1) == ref).sum())
    float_agree = same_float / (len(nudges) * ids.size)
    print(f"float nudged by 1e-5: {float_agree:.4f}; integer: {same_int / ids.size:.4f}")
    assert float_agree < 0.995


def test_chaotic_checkpoint_is_refused_in_integers_and_runs_on_the_float_reference(
        tmp_path, capsys, monkeypatch, seed):
    """The gate on the model the integer decode cannot track (every weight N(0, 1)):
    ``ternary import`` writes it and says it is below the bound; integer numerics
    (``--backend integer``, ``--offload model``) are refused with one line naming the file,
    the measurement and what does run it; ``--backend reference`` generates; a device left
    to choose runs the float reference around its matvecs; ``eval`` measures it."""
    pytest.importorskip("torch", reason="installed by `make test` (reference extra)")
    pytest.importorskip("transformers", reason="installed by `make test` (reference extra)")
    import json

    import host.backends as backends
    from host.cli import main
    from host.device import Device
    from ternary_core.integer.probe import BOUND
    from ternary_core.offload.limits import DeviceLimits
    from tests.python_device import PythonDevice
    from tests.test_hf_equivalence import build_hf_checkpoint

    build_hf_checkpoint(tmp_path / "hf", seed % (1 << 31))
    path = tmp_path / "m.safetensors"
    capsys.readouterr()
    assert main(["import", str(tmp_path / "hf"), "-o", str(path)]) == 0
    said = capsys.readouterr().err.strip().splitlines()[-1]
    record = load_model(path).integer_probe
    assert record.positions == 512 and record.agreement < BOUND
    pct = f"{int(record.agreement * 1000) / 10:.1f}%"
    assert said.startswith(f"integer decode: top-1 agreement {pct} with the float reference over "
                           f"512 probe positions (bound 95%): BELOW the bound")

    common = ["generate", "--model", str(path), "--prompt-ids", "5,80,200", "--tokens", "8",
              "--temperature", "0", "--json"]
    for extra, flag in [(["--backend", "integer"], "--backend integer"),
                        (["--backend", "sim", "--board", "ulx3s-85f", "--offload", "model"],
                         "--offload model")]:
        # refused before any device opens (a simulated board would take minutes to build)
        monkeypatch.setattr(backends, "open_device", lambda args, model=None: pytest.fail("device opened"))
        assert main(common + extra) == 2
        out = capsys.readouterr()
        assert out.out == "" and "Traceback" not in out.err
        line, = out.err.strip().splitlines()
        assert line.startswith(f"ternary generate: error: {flag}: {path}: the integer decode "
                               f"agrees with the float reference on only {pct} of 512 probe "
                               f"positions (top-1; bound 95%)"), line
        assert "--backend reference" in line and "--offload matvec" in line

    assert main(common + ["--backend", "reference"]) == 0
    reference = json.loads(capsys.readouterr().out)["token_ids"]
    assert len(reference) == 8

    # left to choose, a whole-model device runs it with --offload matvec, and says why
    monkeypatch.setattr(backends, "open_device", lambda args, model=None: Device(PythonDevice(
        DeviceLimits.for_config(load_model(path).config))))
    monkeypatch.setattr(backends, "open_backend", lambda args, model, device=None: GoldenBackend())
    assert main(common + ["--backend", "sim", "--board", "ulx3s-85f"]) == 0
    out = capsys.readouterr()
    got = json.loads(out.out)
    assert got["offload"] == "matvec" and got["token_ids"] == reference
    assert f"note: {path}: the integer decode agrees with the float reference on only {pct}" \
        in out.err and "running it with --offload matvec" in out.err

    ids = tmp_path / "ids.txt"
    ids.write_text(" ".join(str(t) for t in np.random.default_rng(seed).integers(0, 256, 130)))
    assert main(["eval", "--model", str(path), "--ids", str(ids), "--backend", "integer",
                 "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["top1_agreement"] < BOUND
    assert f"note: {path}: the integer decode agrees with the float reference on only {pct}" \
        in out.err and "ternary generate refuses --backend integer for it" in out.err
    print(said)
