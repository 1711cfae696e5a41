"""Small GPT-SoVITS model folders in the official formats, for tests that need a whole engine.

No real weights can be downloaded here, so an engine test combines the golden tiny s1/s2
checkpoints with a HuBERT folder as wide as real chinese-hubert-base (768, which the SoVITS
ssl_proj needs) but one layer deep, and a RoBERTa folder as wide as the real one (1024, which
the T2S bert_proj needs) but three layers deep, all with random weights and official key names.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "golden"

BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", ".", "!", "?", "…", "，", "。",
              *"你好世界今天气很我们一起去公园散步吧这是参考音频的文本大家欢迎来到直播间谢谢礼物"]


def random_bert_state(config: dict, seed: int = 0, *, prefix: str = "bert.") -> dict[str, torch.Tensor]:
    """A BertForMaskedLM-style state dict (trunk under `prefix`, plus pooler and MLM head)."""
    gen = torch.Generator().manual_seed(seed)
    h, inter = config["hidden_size"], config["intermediate_size"]

    def rnd(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=gen)

    state = {
        "embeddings.word_embeddings.weight": rnd(config["vocab_size"], h),
        "embeddings.position_embeddings.weight": rnd(config["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": rnd(config["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": 1 + rnd(h, scale=0.1),
        "embeddings.LayerNorm.bias": rnd(h, scale=0.1),
        "embeddings.position_ids": torch.arange(config["max_position_embeddings"])[None],
        "pooler.dense.weight": rnd(h, h),
        "pooler.dense.bias": rnd(h),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            state[p + f"attention.self.{name}.weight"] = rnd(h, h)
            state[p + f"attention.self.{name}.bias"] = rnd(h, scale=0.05)
        state[p + "attention.output.dense.weight"] = rnd(h, h)
        state[p + "attention.output.dense.bias"] = rnd(h, scale=0.05)
        state[p + "attention.output.LayerNorm.weight"] = 1 + rnd(h, scale=0.1)
        state[p + "attention.output.LayerNorm.bias"] = rnd(h, scale=0.1)
        state[p + "intermediate.dense.weight"] = rnd(inter, h)
        state[p + "intermediate.dense.bias"] = rnd(inter, scale=0.05)
        state[p + "output.dense.weight"] = rnd(h, inter)
        state[p + "output.dense.bias"] = rnd(h, scale=0.05)
        state[p + "output.LayerNorm.weight"] = 1 + rnd(h, scale=0.1)
        state[p + "output.LayerNorm.bias"] = rnd(h, scale=0.1)
    state = {prefix + k: v for k, v in state.items()}
    state["cls.predictions.bias"] = rnd(config["vocab_size"])
    state["cls.predictions.transform.dense.weight"] = rnd(h, h)
    return state


def write_bert_folder(folder: Path, config: dict, vocab: list[str], *, half: bool = False, **state_kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    state = random_bert_state(config, **state_kwargs)
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def write_roberta_like_folder(folder: Path) -> Path:
    """1024 wide (as chinese-roberta-wwm-ext-large), 3 layers, a vocabulary of test characters."""
    config = {"model_type": "bert", "vocab_size": len(BERT_VOCAB), "hidden_size": 1024, "num_hidden_layers": 3,
              "num_attention_heads": 16, "intermediate_size": 256, "hidden_act": "gelu",
              "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12}
    write_bert_folder(folder, config, BERT_VOCAB, half=True)
    (folder / "tokenizer.json").write_text(json.dumps({
        "normalizer": {"lowercase": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {t: i for i, t in enumerate(BERT_VOCAB)}},
    }, ensure_ascii=False))
    return folder


def write_hubert_folder(folder: Path, hidden: int = 768, layers: int = 1, seed: int = 0) -> Path:
    """A transformers-format HuBERT folder (old weight-norm names, as the real file) with random weights."""
    from voxroom.models.gpt_sovits.hubert import HubertConfig, HubertModel

    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads((GOLDEN / "models" / "hubert_tiny" / "config.json").read_text())
    config.update(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=12, intermediate_size=512)
    torch.manual_seed(seed)
    model = HubertModel(HubertConfig.from_dict(config))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for k, v in state.items():
        if v.is_floating_point():
            state[k] = v + 0.02 * torch.randn_like(v)
    weight = state.pop("encoder.pos_conv_embed.conv.weight")
    state["encoder.pos_conv_embed.conv.weight_v"] = weight
    state["encoder.pos_conv_embed.conv.weight_g"] = weight.norm(dim=(0, 1), keepdim=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(GOLDEN / "models" / "hubert_tiny" / "preprocessor_config.json", folder)
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def write_models_dir(root: Path) -> Path:
    """A models directory laid out as `voxroom models pull v2` leaves it, with small official-format files."""
    from voxroom.models.weights import MODEL_SETS

    model_set = MODEL_SETS["v2"]
    for name, source in ((model_set.gpt, "s1_tiny_v2_eos.ckpt"), (model_set.sovits, "s2_tiny_v2.pth")):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(GOLDEN / "models" / source, root / name)
    write_hubert_folder(root / "chinese-hubert-base")
    write_roberta_like_folder(root / "chinese-roberta-wwm-ext-large")
    return root
