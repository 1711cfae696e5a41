"""BERT phone features: tokenizer, BertModel-format loading, hidden_states[-3], word2ph expansion.

No golden data exists for RoBERTa, so each test builds a small random BertModel-format folder
(config.json, vocab.txt or tokenizer.json, pytorch_model.bin with BertForMaskedLM key names).
Where `transformers` / `tokenizers` are installed they serve as references (test-only
dependencies): hidden states atol 1e-4, token ids exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from voxroom.models.gpt_sovits.bert import (
    BertTokenizer,
    expand_to_phones,
    load_bert,
    load_bert_model,
    zero_phone_features,
)
from voxroom.models.gpt_sovits.feature_files import FeatureModelFileError

from .model_folders import write_bert_folder

ATOL = 1e-4
VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    ",",
    ".",
    "!",
    "?",
    "…",
    "，",
    "。",
    "你",
    "好",
    "世",
    "界",
    "今",
    "天",
    "a",
    "ab",
    "##b",
    "##c",
    "1",
    "##2",
]
TINY_CONFIG = {
    "model_type": "bert",
    "vocab_size": len(VOCAB),
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "hidden_act": "gelu",
    "max_position_embeddings": 40,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
}


def write_folder(folder: Path, config: dict = TINY_CONFIG, *, half: bool = False, **state_kwargs) -> Path:
    return write_bert_folder(folder, config, VOCAB, half=half, **state_kwargs)


@pytest.fixture()
def folder(tmp_path) -> Path:
    return write_folder(tmp_path / "bert")


# -- tokenizer --------------------------------------------------------------------------------------------


def test_chinese_text_is_one_token_per_character(folder) -> None:
    tok = BertTokenizer.from_folder(folder)
    ids = tok.encode("你好，世界。今天!")
    assert ids[0] == VOCAB.index("[CLS]") and ids[-1] == VOCAB.index("[SEP]")
    assert [VOCAB[i] for i in ids[1:-1]] == list("你好，世界。今天!")


def test_wordpiece_lowercase_and_unknowns(folder) -> None:
    tok = BertTokenizer.from_folder(folder)
    # "b" alone is not in the vocabulary (only the continuation "##b"); "13" has no "##3".
    expected = ["ab", "a", "[UNK]", "[UNK]", "1", "##2", "[UNK]"]
    assert [VOCAB[i] for i in tok.encode("AB a b\tx 12 13")[1:-1]] == expected
    assert [VOCAB[i] for i in tok.encode("abb")[1:-1]] == ["ab", "##b"]
    assert [VOCAB[i] for i in tok.encode("abx")[1:-1]] == ["[UNK]"]  # one bad piece spoils the word
    assert [VOCAB[i] for i in tok.encode("好\x00界")[1:-1]] == ["好", "界"]  # control characters dropped


@pytest.mark.parametrize("text", ["你好，世界。", "AB你 ab12好b", "Ábc\t好\x00界…", "今天?? a1b 天"])
def test_tokenizer_matches_tokenizers_package(tmp_path, text) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    folder = write_folder(tmp_path / "bert")
    reference = tokenizers.BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True)
    assert BertTokenizer.from_folder(folder).encode(text) == reference.encode(text).ids
    # The same vocabulary read from tokenizer.json (what the GPT-SoVITS folder ships).
    json_folder = tmp_path / "json_only"
    json_folder.mkdir()
    reference.save(str(json_folder / "tokenizer.json"))
    assert BertTokenizer.from_folder(json_folder).encode(text) == reference.encode(text).ids


def test_missing_tokenizer_and_special_tokens(tmp_path) -> None:
    with pytest.raises(FeatureModelFileError, match="no tokenizer"):
        BertTokenizer.from_folder(tmp_path)
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(FeatureModelFileError, match=r"\[UNK\]"):
        BertTokenizer.from_folder(tmp_path)


# -- model ------------------------------------------------------------------------------------------------


def test_features_are_third_hidden_state_from_the_end(folder) -> None:
    extractor = load_bert(folder)
    text = "你好，世界。"
    ids = torch.tensor([extractor.tokenizer.encode(text)])
    full = extractor.model.hidden_states(ids)
    assert len(full) == TINY_CONFIG["num_hidden_layers"] + 1
    feats = extractor.char_features(text)
    assert feats.shape == (len(text), 32)
    torch.testing.assert_close(feats, full[-3][0, 1:-1])
    assert not torch.allclose(feats, full[-1][0, 1:-1], atol=1e-3)


def test_two_layer_model_uses_embedding_output(tmp_path) -> None:
    """With 2 layers hidden_states[-3] is the embedding output, which is easy to compute by hand."""
    config = dict(TINY_CONFIG, num_hidden_layers=2)
    folder = write_folder(tmp_path / "bert2", config)
    state = {k.removeprefix("bert."): v for k, v in torch.load(folder / "pytorch_model.bin").items()}
    extractor = load_bert(folder)
    text = "今天好"
    ids = torch.tensor(extractor.tokenizer.encode(text))
    x = (
        state["embeddings.word_embeddings.weight"][ids]
        + state["embeddings.position_embeddings.weight"][: len(ids)]
        + state["embeddings.token_type_embeddings.weight"][0]
    )
    expected = torch.nn.functional.layer_norm(
        x, (32,), state["embeddings.LayerNorm.weight"], state["embeddings.LayerNorm.bias"], eps=1e-12
    )
    torch.testing.assert_close(extractor.char_features(text), expected[1:-1], atol=ATOL, rtol=0)


def test_matches_transformers_bert(folder) -> None:
    transformers = pytest.importorskip("transformers")
    reference = transformers.BertModel(transformers.BertConfig(**TINY_CONFIG), add_pooling_layer=True).eval()
    state = {k.removeprefix("bert."): v for k, v in torch.load(folder / "pytorch_model.bin").items()}
    missing, _ = reference.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith("cls.")}, strict=False
    )
    assert not [k for k in missing if "position_ids" not in k and "token_type_ids" not in k]
    extractor = load_bert(folder)
    ids = torch.tensor([extractor.tokenizer.encode("你好，世界。今天好!")])
    with torch.no_grad():
        expected = reference(input_ids=ids, output_hidden_states=True).hidden_states
    mine = extractor.model.hidden_states(ids)
    assert len(mine) == len(expected)
    for a, b in zip(mine, expected, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_fp16_and_tf_style_names_load(tmp_path, folder) -> None:
    state = torch.load(folder / "pytorch_model.bin")
    renamed = {}
    for key, value in state.items():
        if ".LayerNorm." in key:
            key = key.replace(".weight", ".gamma").replace(".bias", ".beta")
        renamed[key] = value.half() if value.is_floating_point() else value
    other = tmp_path / "tf_names"
    other.mkdir()
    for name in ("config.json", "vocab.txt"):
        (other / name).write_bytes((folder / name).read_bytes())
    torch.save(renamed, other / "pytorch_model.bin")
    a = load_bert(folder).char_features("你好")
    b = load_bert(other).char_features("你好")
    assert b.dtype == torch.float32
    assert (a - b).abs().max() < 0.05  # only fp16 rounding of the weights differs


def test_missing_tensor_and_files_are_reported(tmp_path, folder) -> None:
    state = torch.load(folder / "pytorch_model.bin")
    del state["bert.encoder.layer.2.output.dense.weight"]
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(FeatureModelFileError, match="encoder.layer.2.output.dense.weight"):
        load_bert_model(folder)
    with pytest.raises(FeatureModelFileError, match="config.json"):
        load_bert(tmp_path / "absent")


def test_config_without_sizes_is_rejected(tmp_path, folder) -> None:
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    with pytest.raises(FeatureModelFileError, match="num_hidden_layers"):
        load_bert_model(folder)


def test_too_long_text_is_rejected(folder) -> None:
    extractor = load_bert(folder)
    with pytest.raises(ValueError, match="positions"):
        extractor.char_features("好" * 39)


# -- word2ph expansion ------------------------------------------------------------------------------------


def test_expand_to_phones_repeats_each_character() -> None:
    chars = torch.arange(12, dtype=torch.float32).reshape(4, 3)  # 4 characters, dim 3
    word2ph = [2, 1, 0, 3]
    out = expand_to_phones(chars, word2ph)
    assert out.shape == (3, 6)
    columns = [0, 0, 1, 3, 3, 3]  # character index of each phone
    torch.testing.assert_close(out, chars[columns].T)
    with pytest.raises(ValueError):
        expand_to_phones(chars, [1, 1, 1])
    with pytest.raises(ValueError):
        expand_to_phones(chars, [1, -1, 1, 1])


def test_phone_features_shape_and_alignment(folder) -> None:
    extractor = load_bert(folder)
    text = "你好，世界。"
    word2ph = [2, 2, 1, 2, 2, 1]
    feats = extractor.phone_features(text, word2ph)
    assert feats.shape == (32, sum(word2ph))
    chars = extractor.char_features(text)
    torch.testing.assert_close(feats[:, 4], chars[2])  # the comma's single phone
    torch.testing.assert_close(feats[:, 5], chars[3])
    with pytest.raises(ValueError, match="word2ph"):
        extractor.phone_features(text, word2ph[:-1])
    assert zero_phone_features(7).shape == (1024, 7)


def test_latin_run_falls_back_to_one_token_per_character(folder) -> None:
    extractor = load_bert(folder)
    # "ab" is a single WordPiece; features must still line up with the 3 characters.
    assert len(extractor.tokenizer.encode("ab好")) == 4
    ids = extractor.token_ids("ab好")
    assert [VOCAB[i] for i in ids[1:-1]] == ["a", "[UNK]", "好"]
    assert extractor.phone_features("ab好", [1, 1, 2]).shape == (32, 4)


def test_padding_mask_keeps_real_tokens_unchanged(folder) -> None:
    """A batch row padded at the end gives the same states for its real tokens (atol 1e-5)."""
    extractor = load_bert(folder)
    ids = extractor.tokenizer.encode("你好，世界。")
    alone = extractor.model.hidden_states(torch.tensor([ids]))[-1]
    padded = torch.tensor([ids + [0, 0, 0]])
    mask = torch.tensor([[1] * len(ids) + [0, 0, 0]])
    batched = extractor.model.hidden_states(padded, mask)[-1]
    torch.testing.assert_close(batched[:, : len(ids)], alone, atol=1e-5, rtol=0)
    unmasked = extractor.model.hidden_states(padded)[-1]
    assert not torch.allclose(unmasked[:, : len(ids)], alone, atol=1e-3)
