"""Text-to-semantic (GPT, s1) model against the official golden vectors, plus decoding rules.

Tolerances (golden data is fp32 computed from fp16-stored weights; fp64 recomputation moves the
logits by <= 2e-6, and the smallest greedy margin is 4e-3, so 1e-4 pins every token):
- embeddings (x_embed, y_pos), last hidden state of step 0, first-step and per-step logits:
  atol 1e-4 (measured <= 4.3e-6);
- first-step attention mask, tokens, y, idx, WebUI slice, stream chunk boundaries: exact;
- mute-similarity vector (cosine of embedding rows): atol 1e-6 (measured 0.0);
- static-cache decoding vs no-cache recompute on the full-size random model: atol 1e-4 on logits
  of magnitude ~12 (measured 1.9e-5);
- oneDNN-prepacked fp32 weights: the same golden tolerances (measured <= 2.4e-6); packed vs plain
  bf16 first-step logits: atol 0.1;
- reduced precision, first-step logits vs golden on the tiny model (absmax ~9): bf16 atol 0.15
  (measured 0.061), fp16 atol 0.03 (measured 0.005), int8 atol 0.5 (measured 0.11); loose bounds
  that still catch a broken cast or quantization (a wrong weight gives errors ~5).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from voxroom.models.gpt_sovits.checkpoints import CheckpointError
from voxroom.models.gpt_sovits.sampling import (
    FixedChunker,
    MuteChunker,
    SamplingParams,
    apply_repetition_penalty,
    choose_tokens,
    chunk_tokens,
    filter_logits,
    mute_similarity,
)
from voxroom.models.gpt_sovits.t2s_generate import (
    generate,
    generate_batch,
    generate_chunks,
    generate_stream,
    start_session,
)
from voxroom.models.gpt_sovits.t2s_model import (
    T2SCheckpointError,
    T2SConfig,
    T2SModel,
    load_t2s,
    prefix_lm_mask,
    read_t2s_checkpoint,
)
from voxroom.models.gpt_sovits.t2s_quantize import quantize_int8

GOLDEN = Path(os.environ.get("VOXROOM_GOLDEN", Path(__file__).resolve().parents[3] / "shared" / "golden"))
TINY = GOLDEN / "models" / "s1_tiny_v2.ckpt"
TINY_EOS = GOLDEN / "models" / "s1_tiny_v2_eos.ckpt"
ATOL = 1e-4

pytestmark = pytest.mark.skipif(not TINY.is_file(), reason=f"golden data not found at {GOLDEN}")

# golden file -> (checkpoint, repetition penalty, early_stop_num)
GREEDY_CASES = {
    "greedy_ref_bertzero_rp1.35": (TINY, 1.35, 59),
    "greedy_ref_bertrand_rp1.35": (TINY, 1.35, 59),
    "greedy_ref_bertzero_rp1.0": (TINY, 1.0, 59),
    "greedy_reffree_bertzero_rp1.35": (TINY, 1.35, 59),
    "eos_greedy_ref_bertzero_rp1.35": (TINY_EOS, 1.35, 2700),
}


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def models() -> dict[Path, T2SModel]:
    return {TINY: load_t2s(TINY), TINY_EOS: load_t2s(TINY_EOS)}


def golden(name: str) -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "t2s" / f"{name}.safetensors")


def prompt_of(d: dict[str, torch.Tensor]) -> torch.Tensor | None:
    return d.get("prompts")


# ---- loader ------------------------------------------------------------------------------------


def test_loader_reads_official_checkpoint(models: dict[Path, T2SModel]) -> None:
    model = models[TINY]
    assert model.config == T2SConfig(
        embedding_dim=64, hidden_dim=64, n_head=4, n_layer=3, phoneme_vocab_size=732, vocab_size=1025, eos=1024,
        max_sec=54,
    )
    assert model.config.early_stop_num == 2700
    assert model.info == "GPT-e1"
    raw = torch.load(TINY, map_location="cpu", weights_only=True)["weight"]
    # fp16 values upcast exactly, fused q|k|v kept in order, (out, in) stored transposed.
    assert torch.equal(model.layers[1].qkv.weight, raw["model.h.layers.1.self_attn.in_proj_weight"].float().t())
    assert torch.equal(model.layers[2].norm2.bias, raw["model.h.layers.2.norm2.bias"].float())
    assert torch.equal(model.lm_head.weight, raw["model.ar_predict_layer.weight"].float().t())
    assert model.text_alpha.item() == pytest.approx(0.85, abs=1e-3)
    assert model.audio_alpha.item() == pytest.approx(1.2, abs=1e-3)
    assert model.lm_head.bias is None


def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def test_loader_rejects_what_is_not_an_s1_checkpoint(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.ckpt"
    text_file.write_text("hello")
    zip_file = tmp_path / "other.ckpt"
    with zipfile.ZipFile(zip_file, "w") as zf:
        zf.writestr("a.txt", "x")
    ckpt = torch.load(TINY, map_location="cpu", weights_only=True)
    no_prefix = _save({"weight": {k[6:]: v for k, v in ckpt["weight"].items()}, "config": ckpt["config"]},
                      tmp_path / "noprefix.ckpt")
    bad_config = dict(ckpt["config"], model=dict(ckpt["config"]["model"], n_layer=4))
    more_layers = _save({"weight": ckpt["weight"], "config": bad_config}, tmp_path / "layers.ckpt")
    wrong_width = _save({"weight": ckpt["weight"], "config": dict(ckpt["config"], model=dict(
        ckpt["config"]["model"], embedding_dim=32, hidden_dim=32))}, tmp_path / "width.ckpt")
    bad_eos = _save({"weight": ckpt["weight"], "config": dict(ckpt["config"], model=dict(
        ckpt["config"]["model"], EOS=3))}, tmp_path / "eos.ckpt")
    just_tensor = _save(torch.zeros(3), tmp_path / "tensor.ckpt")
    no_model = _save({"weight": ckpt["weight"], "config": {"data": {}}}, tmp_path / "nomodel.ckpt")
    half_model = _save({"weight": ckpt["weight"], "config": {"model": {"head": 4}}}, tmp_path / "half.ckpt")
    cases = {
        tmp_path / "missing.ckpt": "cannot read",
        text_file: "not a torch zip",
        zip_file: "cannot be read",
        just_tensor: "no 'weight'",
        no_model: "no 'model' section",
        half_model: "lacks",
        no_prefix: "prefix",
        more_layers: "do not match",
        wrong_width: "shape",
        bad_eos: "EOS",
        GOLDEN / "models" / "s2_tiny_v2.pth": "SoVITS",  # pickles utils.HParams: refused
        GOLDEN / "models" / "s2_tiny_v2pro.pth": "SoVITS version header",
    }
    for path, message in cases.items():
        with pytest.raises(T2SCheckpointError, match=message):
            load_t2s(path)
    assert issubclass(T2SCheckpointError, CheckpointError) and issubclass(T2SCheckpointError, ValueError)


def test_loader_names_a_sovits_state_dict(tmp_path: Path) -> None:
    path = _save({"weight": {"enc_p.text_embedding.weight": torch.zeros(2, 2)}, "config": {}}, tmp_path / "s2.ckpt")
    with pytest.raises(T2SCheckpointError, match="SoVITS"):
        read_t2s_checkpoint(path)


# ---- numerics against the golden files ----------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in GREEDY_CASES if not n.startswith("eos")])
def test_embeddings_and_mask_match_golden(models: dict[Path, T2SModel], name: str) -> None:
    d = golden(name)
    model = models[GREEDY_CASES[name][0]]
    prompt = prompt_of(d)
    with torch.inference_mode():
        torch.testing.assert_close(model.embed_text(d["phoneme_ids"], d["bert_feature"]), d["x_embed"],
                                   atol=ATOL, rtol=0)
        if prompt is not None:
            torch.testing.assert_close(model.embed_audio(prompt), d["y_pos"], atol=ATOL, rtol=0)
    n_prompt = 0 if prompt is None else prompt.shape[1]
    assert torch.equal(~prefix_lm_mask(d["phoneme_ids"].shape[1], n_prompt), d["attn_mask_first_step"])


@pytest.mark.parametrize("name", list(GREEDY_CASES))
def test_greedy_decoding_matches_golden(models: dict[Path, T2SModel], name: str) -> None:
    ckpt, penalty, early_stop = GREEDY_CASES[name]
    d = golden(name)
    result = generate(models[ckpt], d["phoneme_ids"], d["bert_feature"], prompt_of(d), top_k=1,
                      repetition_penalty=penalty, early_stop_num=early_stop, record_logits=True)
    assert result.logits is not None and result.prefill_hidden is not None
    assert result.logits.shape == d["logits_raw_all_steps"].shape  # same number of steps run
    torch.testing.assert_close(result.logits[:1], d["logits_first_step"], atol=ATOL, rtol=0)
    torch.testing.assert_close(result.logits, d["logits_raw_all_steps"], atol=ATOL, rtol=0)
    if "xy_dec_last_first_step" in d:
        torch.testing.assert_close(result.prefill_hidden, d["xy_dec_last_first_step"], atol=ATOL, rtol=0)
    assert torch.equal(result.tokens, d["generated"].long())
    assert torch.equal(result.y, d["y"][0].long())
    assert result.idx == int(d["idx"])
    assert torch.equal(result.webui_tokens, d["pred_semantic_webui"][0].long())
    assert result.stop_reason == ("eos" if name.startswith("eos") else "early_stop")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_weights_give_the_same_model(dtype: torch.dtype) -> None:
    d = golden("greedy_ref_bertrand_rp1.35")
    plain = load_t2s(TINY, dtype=dtype)
    packed = load_t2s(TINY, dtype=dtype, pack=True)
    if not any(m.packed is not None for m in packed.modules() if hasattr(m, "packed")):
        pytest.skip("oneDNN prepacking unsupported on this CPU")
    args = (d["phoneme_ids"], d["bert_feature"], d["prompts"])
    a = generate(plain, *args, top_k=1, early_stop_num=59, record_logits=True)
    b = generate(packed, *args, top_k=1, early_stop_num=59, record_logits=True)
    assert a.logits is not None and b.logits is not None
    if dtype == torch.float32:  # packed fp32 must still meet the golden tolerance
        torch.testing.assert_close(b.logits, d["logits_raw_all_steps"], atol=ATOL, rtol=0)
        assert torch.equal(b.tokens, d["generated"])
    else:
        torch.testing.assert_close(b.logits[:1], a.logits[:1], atol=0.1, rtol=0)


def test_eos_stop_and_webui_quirk(models: dict[Path, T2SModel]) -> None:
    eos = golden("eos_greedy_ref_bertzero_rp1.35")
    # EOS at step 25: 26 steps ran, 25 tokens kept, idx 25, the slice keeps them all.
    result = generate(models[TINY_EOS], eos["phoneme_ids"], eos["bert_feature"], eos["prompts"], top_k=1,
                      early_stop_num=2700)
    assert (result.idx, len(result.tokens), result.stop_reason) == (25, 25, "eos")
    assert torch.equal(result.webui_tokens, result.tokens)
    # Early stop at 59: 60 tokens kept, idx 59, so the official slice drops the first token.
    d = golden("greedy_ref_bertzero_rp1.35")
    result = generate(models[TINY], d["phoneme_ids"], d["bert_feature"], d["prompts"], top_k=1, early_stop_num=59)
    assert (result.idx, len(result.tokens)) == (59, 60)
    assert torch.equal(result.webui_tokens, result.tokens[1:])


def test_step_cap_behaves_like_the_official_1500_cap(models: dict[Path, T2SModel]) -> None:
    d = golden("greedy_ref_bertzero_rp1.35")
    result = generate(models[TINY], d["phoneme_ids"], d["bert_feature"], d["prompts"], top_k=1,
                      early_stop_num=-1, max_steps=20)
    assert (result.idx, len(result.tokens), result.stop_reason) == (19, 20, "max_steps")
    assert torch.equal(result.tokens, d["generated"][:20])
    assert torch.equal(result.webui_tokens, result.tokens[1:])  # the off-by-one of the cap


def test_default_early_stop_comes_from_the_checkpoint(models: dict[Path, T2SModel]) -> None:
    d = golden("greedy_ref_bertzero_rp1.35")
    session = start_session(models[TINY], d["phoneme_ids"], d["bert_feature"], d["prompts"], params=SamplingParams(top_k=1))
    assert session.early_stop_num == 50 * 54


@pytest.mark.parametrize("name", ["greedy_ref_bertzero_rp1.35", "greedy_reffree_bertzero_rp1.35",
                                  "eos_greedy_ref_bertzero_rp1.35"])
def test_token_stream_yields_the_same_tokens(models: dict[Path, T2SModel], name: str) -> None:
    ckpt, penalty, early_stop = GREEDY_CASES[name]
    d = golden(name)
    session = generate_stream(models[ckpt], d["phoneme_ids"][0], d["bert_feature"][0], prompt_of(d), top_k=1,
                              repetition_penalty=penalty, early_stop_num=early_stop)
    first = next(session)
    assert isinstance(first, int) and first == int(d["generated"][0])
    rest = list(session)
    assert [first, *rest] == d["generated"].tolist()
    assert session.result().idx == int(d["idx"])


STREAM_CASES = {
    "stream_fixed24": (TINY, 59, lambda d: FixedChunker(24)),
    "stream_mute24_thr0.3": (TINY, 59, lambda d: MuteChunker(d["mute_emb_sim_matrix"], 24, 0.3)),
    "stream_mute24_crafted": (TINY, 59, lambda d: MuteChunker(d["mute_emb_sim_matrix"], 24, 0.3)),
    "eos_stream_fixed24": (TINY_EOS, 2700, lambda d: FixedChunker(24)),
}
STREAM_FLAGS = {
    "stream_fixed24": [False, False, True],
    "stream_mute24_thr0.3": [True],
    "stream_mute24_crafted": [False, True],
    "eos_stream_fixed24": [False, True],
}


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("name", list(STREAM_CASES))
def test_stream_chunks_match_golden(models: dict[Path, T2SModel], name: str, overlap: bool) -> None:
    ckpt, early_stop, make_chunker = STREAM_CASES[name]
    d = golden(name)
    base = golden("greedy_ref_bertzero_rp1.35")
    chunks = list(generate_chunks(models[ckpt], base["phoneme_ids"], base["bert_feature"], base["prompts"], top_k=1,
                                  early_stop_num=early_stop, chunker=make_chunker(d), official_overlap=overlap))
    want = [d[k] for k in sorted(k for k in d if k.startswith("chunk_"))]
    assert [final for _, final in chunks] == STREAM_FLAGS[name]
    assert len(chunks) == len(want)
    for (chunk, _), expected in zip(chunks, want, strict=True):
        assert chunk is not None and torch.equal(chunk, expected)
    assert torch.equal(torch.cat([c for c, _ in chunks if c is not None], dim=1), d["concat"])


def test_mute_similarity_matches_tts_py(models: dict[Path, T2SModel]) -> None:
    d = golden("stream_mute24_thr0.3")
    sim = mute_similarity(models[TINY].audio_embedding.weight)
    torch.testing.assert_close(sim, d["mute_emb_sim_matrix"], atol=1e-6, rtol=0)
    torch.testing.assert_close(models[TINY].mute_similarity(), sim, atol=0, rtol=0)


def test_batch_inference_matches_golden(models: dict[Path, T2SModel]) -> None:
    d = golden("batch_infer_2")
    results = generate_batch(models[TINY], [d["x_a"], d["x_b"]], [d["bert_a"], d["bert_b"]], d["prompts"],
                             top_k=1, early_stop_num=59)
    assert [r.idx for r in results] == d["idx"].tolist()
    assert torch.equal(results[0].y, d["y_a"]) and torch.equal(results[1].y, d["y_b"])
    # Left padding must not leak into the longer item: it decodes like the single-stream path
    # (minus the batch path's dropped last token).
    single = generate(models[TINY], d["x_a"], d["bert_a"], d["prompts"][0], top_k=1, early_stop_num=59)
    assert torch.equal(results[0].tokens, single.tokens[:-1])


def test_batch_rows_finish_independently(models: dict[Path, T2SModel]) -> None:
    """With the EOS checkpoint the two rows stop on EOS at different steps (25 and 28); each row
    must equal its own single-stream decode (EOS rows lose only the EOS, as single-stream)."""
    d = golden("batch_infer_2")
    items = [(d["x_a"], d["bert_a"]), (d["x_b"], d["bert_b"])]
    model = models[TINY_EOS]
    results = generate_batch(model, [x for x, _ in items], [b for _, b in items], d["prompts"], top_k=1,
                             early_stop_num=100)
    assert sorted(r.idx for r in results) == [25, 28]
    for result, (x, bert) in zip(results, items, strict=True):
        single = generate(model, x, bert, d["prompts"][0], top_k=1, early_stop_num=100)
        assert result.stop_reason == single.stop_reason == "eos"
        assert result.idx == single.idx and torch.equal(result.tokens, single.tokens)
    # Reference-free batches fall back to one-by-one decoding, as officially.
    n_ref = 19
    free = generate_batch(model, [x[n_ref:] for x, _ in items], [b[:, n_ref:] for _, b in items], None, top_k=1,
                          early_stop_num=40)
    single = generate(model, d["x_b"][n_ref:], d["bert_b"][:, n_ref:], None, top_k=1, early_stop_num=40)
    assert free[1].idx == 0 and torch.equal(free[1].tokens, single.tokens)


# ---- decoding rules in isolation ---------------------------------------------------------------


def test_repetition_penalty_sign_rule_and_once_per_id() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, -1.0]])
    seen = torch.tensor([[True, True, False, False]])
    out = apply_repetition_penalty(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, -1.0]]
    assert apply_repetition_penalty(logits, seen, 1.0) is logits


def test_filters_run_top_p_then_temperature_then_top_k() -> None:
    logits = torch.tensor([[4.0, 3.0, 3.0, 0.0, -1.0]])
    # top-k keeps ties with the k-th value
    kept = torch.isfinite(filter_logits(logits, SamplingParams(top_k=2, repetition_penalty=1.0)))
    assert kept.tolist() == [[True, True, True, False, False]]
    # top-p always keeps the best id, even with a tiny p
    kept = torch.isfinite(filter_logits(logits, SamplingParams(top_k=0, top_p=1e-6)))
    assert kept.tolist() == [[True, False, False, False, False]]
    # temperature divides what survives (min 1e-5)
    out = filter_logits(logits, SamplingParams(top_k=0, temperature=0.5))
    assert torch.equal(out, logits * 2)


def test_eos_is_cut_for_the_first_11_steps() -> None:
    logits = torch.zeros(1, 1025)
    logits[0, 1024] = 50.0
    seen = torch.zeros(1, 1025, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    for step in range(11):
        assert int(choose_tokens(logits, seen, step, 1024, SamplingParams(), gen).greedy[0]) != 1024
    assert int(choose_tokens(logits, seen, 11, 1024, SamplingParams(), gen).greedy[0]) == 1024


def test_sampling_follows_the_official_noise_stream() -> None:
    """With the global RNG, our draw equals argmax(p / Exp(1)) drawn with the official tensor shape."""
    logits = torch.randn(1, 1025, generator=torch.Generator().manual_seed(3)) * 3
    seen = torch.zeros(1, 1025, dtype=torch.bool)
    seen[0, :50] = True
    params = SamplingParams(top_k=15, top_p=0.9, temperature=0.8)
    for step in (3, 20):
        torch.manual_seed(1234)
        ours = int(choose_tokens(logits, seen, step, 1024, params).token[0])
        torch.manual_seed(1234)
        cut = logits[:, :1024] if step < 11 else logits
        probs = torch.softmax(filter_logits(apply_repetition_penalty(cut, seen, 1.35), params), dim=-1)
        expected = int(torch.argmax(probs / torch.empty_like(probs).exponential_(1)))
        assert ours == expected


def test_seeded_generator_makes_sampling_reproducible(models: dict[Path, T2SModel]) -> None:
    d = golden("greedy_ref_bertzero_rp1.35")
    args = (models[TINY], d["phoneme_ids"], d["bert_feature"], d["prompts"])

    def run(seed: int) -> list[int]:
        return generate(*args, top_k=15, early_stop_num=30, generator=torch.Generator().manual_seed(seed)).tokens.tolist()

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_chunker_overlap_quirk_is_opt_in() -> None:
    sim = torch.zeros(1025)
    sim[5] = 1.0
    tokens = [1, 2, 5, 5, 3, 4, 6, 7]  # two quiet tokens (5) in a row at positions 2-3
    steps = [(t, i == len(tokens) - 1) for i, t in enumerate(tokens)]
    chunker = MuteChunker(sim, chunk_length=2, threshold=0.3)
    clean = [(c.tolist() if c is not None else None, f) for c, f in chunk_tokens(iter(steps), chunker)]
    assert clean == [([[1, 2, 5]], False), ([[5, 3, 4, 6, 7]], True)]
    quirky = [(c.tolist() if c is not None else None, f)
              for c, f in chunk_tokens(iter(steps), chunker, official_overlap=True)]
    assert quirky == [([[1, 2, 5, 5]], False), ([[5, 3, 4, 6, 7]], True)]
    # Stop right after a cut: the official final yield is None.
    fixed = list(chunk_tokens(iter([(1, False), (2, False), (None, True)]), FixedChunker(2)))
    assert fixed[0][0] is not None and fixed[0][0].tolist() == [[1, 2]]
    assert fixed[1] == (None, True)


# ---- full-size model ---------------------------------------------------------------------------


def test_full_size_static_cache_equals_recompute() -> None:
    model = T2SModel.from_config(seed=0)  # official v2 size: 24 layers, 512 dim, 16 heads
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(77.6e6, rel=0.01)
    gen = torch.Generator().manual_seed(0)
    phones = torch.randint(0, 732, (1, 20), generator=gen)
    bert = torch.randn(1, 1024, 20, generator=gen) * 0.5
    prompt = torch.randint(0, 1024, (1, 30), generator=gen)
    result = generate(model, phones, bert, prompt, top_k=1, early_stop_num=4, record_logits=True)
    assert result.logits is not None and len(result.tokens) == 5
    with torch.inference_mode():
        for step in range(5):
            audio = torch.cat([prompt, result.tokens[:step].unsqueeze(0)], dim=1)
            recomputed = model.forward_full(phones, bert, audio)
            torch.testing.assert_close(result.logits[step : step + 1], recomputed, atol=ATOL, rtol=0)
        # reference-free: text only
        free = generate(model, phones, bert, None, top_k=1, early_stop_num=1, record_logits=True)
        assert free.logits is not None
        torch.testing.assert_close(free.logits[:1], model.forward_full(phones, bert, None), atol=ATOL, rtol=0)


def test_reduced_precision_stays_close(models: dict[Path, T2SModel]) -> None:
    d = golden("greedy_ref_bertzero_rp1.35")
    args = (d["phoneme_ids"], d["bert_feature"], d["prompts"])
    bf16 = load_t2s(TINY, dtype=torch.bfloat16)
    fp16 = load_t2s(TINY, dtype=torch.float16)
    int8 = quantize_int8(models[TINY])
    assert fp16.layers[0].qkv.weight.dtype == torch.float16 and not fp16.layers[0].qkv.in_major
    for model, atol in ((bf16, 0.15), (fp16, 0.03), (int8, 0.5)):
        result = generate(model, *args, top_k=1, early_stop_num=0, record_logits=True)
        assert result.logits is not None
        torch.testing.assert_close(result.logits, d["logits_first_step"], atol=atol, rtol=0)


def test_inputs_are_checked(models: dict[Path, T2SModel]) -> None:
    model = models[TINY]
    with pytest.raises(ValueError, match="bert"):
        start_session(model, torch.zeros(5, dtype=torch.long), torch.zeros(1024, 4))
    with pytest.raises(ValueError, match="phone ids"):
        start_session(model, torch.full((4,), 732), torch.zeros(1024, 4))
    with pytest.raises(ValueError, match="prompt"):
        start_session(model, torch.zeros(4, dtype=torch.long), torch.zeros(1024, 4), torch.tensor([1024]))
    with pytest.raises(ValueError):
        SamplingParams(repetition_penalty=0)


def test_session_can_be_cancelled(models: dict[Path, T2SModel]) -> None:
    d = golden("greedy_ref_bertzero_rp1.35")
    session = generate_stream(models[TINY], d["phoneme_ids"], d["bert_feature"], d["prompts"], top_k=1)
    assert [next(session) for _ in range(3)] == d["generated"][:3].tolist()
    session.close()
    assert list(session) == []
    result = session.result()
    assert result.stop_reason == "cancelled" and result.tokens.tolist() == d["generated"][:3].tolist()
    with pytest.raises(RuntimeError, match="finished"):
        session.step()
