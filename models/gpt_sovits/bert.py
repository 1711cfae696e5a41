"""Chinese BERT features for the text-to-semantic model (chinese-roberta-wwm-ext-large).

For every `zh` chunk GPT-SoVITS runs RoBERTa-wwm-ext-large (a BertModel, 24 layers x 1024) on
the normalised text, takes the third hidden state from the end, drops [CLS]/[SEP] and repeats
each character's vector once per phone of that character (`word2ph`) -> (1024, n_phones).
Other languages get zeros of the same shape (`zero_phone_features`).

Plain-PyTorch BertModel that loads the official folder (config.json + pytorch_model.bin, with
or without the "bert." prefix and masked-LM head), plus a small BERT tokenizer reading
tokenizer.json or vocab.txt. Only the layers up to the one whose output is used are run.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .feature_files import FeatureModelFileError, find_weight_file, load_into, load_state_dict, read_json
from .hubert import activation

FEATURE_LAYER_FROM_END = 3  # hidden_states[-3]
BERT_FEATURE_DIM = 1024


# -- tokenizer --------------------------------------------------------------------------------------------


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # BERT counts every non-alphanumeric ASCII character as punctuation, "$" and "^" included.
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


class BertTokenizer:
    """BERT's basic tokenization + WordPiece, as `BertTokenizerFast` does for this model.

    Chinese characters and punctuation each become one token, so for normalised Chinese text
    the ids line up with the characters.
    """

    def __init__(
        self,
        vocab: dict[str, int],
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        unk_token: str = "[UNK]",
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        max_chars_per_word: int = 100,
    ) -> None:
        for token in (unk_token, cls_token, sep_token):
            if token not in vocab:
                raise FeatureModelFileError(f"the vocabulary lacks the special token {token}")
        self.vocab = vocab
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.unk_id = vocab[unk_token]
        self.cls_id = vocab[cls_token]
        self.sep_id = vocab[sep_token]
        self.max_chars_per_word = max_chars_per_word

    @classmethod
    def from_folder(cls, folder: str | Path) -> BertTokenizer:
        """Read tokenizer.json (the file GPT-SoVITS ships) or else vocab.txt."""
        folder = Path(folder)
        if (folder / "tokenizer.json").is_file():
            data = read_json(folder / "tokenizer.json")
            model = data.get("model") or {}
            vocab = model.get("vocab")
            if model.get("type") != "WordPiece" or not isinstance(vocab, dict):
                raise FeatureModelFileError(f"{folder / 'tokenizer.json'} is not a WordPiece tokenizer")
            normalizer = data.get("normalizer") or {}
            return cls(
                {str(k): int(v) for k, v in vocab.items()},
                lowercase=bool(normalizer.get("lowercase", True)),
                strip_accents=normalizer.get("strip_accents"),
                unk_token=model.get("unk_token", "[UNK]"),
                max_chars_per_word=int(model.get("max_input_chars_per_word", 100)),
            )
        if (folder / "vocab.txt").is_file():
            lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
            vocab = {line.rstrip("\n"): i for i, line in enumerate(lines)}
            lowercase = True
            if (folder / "tokenizer_config.json").is_file():
                lowercase = bool(read_json(folder / "tokenizer_config.json").get("do_lower_case", True))
            return cls(vocab, lowercase=lowercase)
        raise FeatureModelFileError(f"no tokenizer in {folder}: expected tokenizer.json or vocab.txt")

    def _normalize(self, text: str) -> str:
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            if _is_whitespace(ch):
                out.append(" ")
            elif _is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = "".join(out)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        return text.lower() if self.lowercase else text

    def words(self, text: str) -> list[str]:
        """Whitespace- and punctuation-split words of the normalised text."""
        words: list[str] = []
        for chunk in self._normalize(text).split():
            current = ""
            for ch in chunk:
                if _is_punctuation(ch):
                    if current:
                        words.append(current)
                    words.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > self.max_chars_per_word:
            return [self.unk_id]
        ids: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk_id]  # one unmatched piece makes the whole word unknown
            start = end
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids with [CLS] ... [SEP]."""
        ids = [self.cls_id]
        for word in self.words(text):
            ids.extend(self._wordpiece(word))
        ids.append(self.sep_id)
        return ids

    def encode_per_char(self, text: str) -> list[int]:
        """One id per character of `text` (between [CLS] and [SEP]), [UNK] where none exists."""
        ids = [self.cls_id]
        for ch in text:
            norm = self._normalize(ch).strip()
            ids.append(self.vocab.get(norm, self.unk_id) if norm else self.unk_id)
        ids.append(self.sep_id)
        return ids


# -- model ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BertConfig:
    """BertConfig fields inference needs; defaults are chinese-roberta-wwm-ext-large's."""

    vocab_size: int = 21128
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> BertConfig:
        # Sizes must come from the file; the remaining fields default as in transformers' BertConfig.
        required = (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
        )
        absent = [name for name in required if name not in data]
        if absent:
            raise FeatureModelFileError(f"{source} lacks {', '.join(absent)}")
        names = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: data[k] for k in names & set(data)})
        if data.get("position_embedding_type", "absolute") != "absolute":
            raise FeatureModelFileError(f"{source}: only absolute position embeddings are supported")
        if config.hidden_size % config.num_attention_heads:
            raise FeatureModelFileError(f"{source}: hidden_size is not a multiple of num_attention_heads")
        activation(config.hidden_act)
        return config


class _Embeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        x = x + self.token_type_embeddings.weight[0]  # a single segment: token type 0 everywhere
        return self.LayerNorm(x)


class _SelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)


class _DenseNorm(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, out_dim)
        self.LayerNorm = nn.LayerNorm(out_dim, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.self = _SelfAttention(config)
        self.output = _DenseNorm(config.hidden_size, config.hidden_size, config.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, dim = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

        q, k, v = split(self.self.query(x)), split(self.self.key(x)), split(self.self.value(x))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.output(context.transpose(1, 2).reshape(batch, length, dim), x)


class _Intermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class _Layer(nn.Module):
    """Post-LN transformer layer with BertModel's parameter names."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = _Attention(config)
        self.intermediate = _Intermediate(config)
        self.output = _DenseNorm(config.intermediate_size, config.hidden_size, config.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class _Encoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))


class BertModel(nn.Module):
    """BertModel trunk without the pooler; `hidden_states` mirrors transformers' output tuple."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        num_layers: int | None = None,
    ) -> list[torch.Tensor]:
        """[embedding output, layer 1 output, …, layer `num_layers` output], each (B, N, hidden).

        `attention_mask` (B, N) is 1 for real tokens, 0 for padding.
        """
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"{input_ids.shape[1]} tokens exceed BERT's {self.config.max_position_embeddings} positions"
            )
        mask = None
        if attention_mask is not None:
            mask = attention_mask[:, None, None, :].to(torch.bool)
        x = self.embeddings(input_ids)
        states = [x]
        layers = self.encoder.layer if num_layers is None else self.encoder.layer[:num_layers]
        for layer in layers:
            x = layer(x, mask)
            states.append(x)
        return states


def load_bert_model(folder: str | Path) -> BertModel:
    """Load a BertModel folder (config.json + pytorch_model.bin / model.safetensors); eval, fp32."""
    folder = Path(folder)
    config = BertConfig.from_dict(read_json(folder / "config.json"), str(folder / "config.json"))
    weights = find_weight_file(folder)
    state: dict[str, torch.Tensor] = {}
    for key, value in load_state_dict(weights).items():
        key = key.removeprefix("bert.")
        # Checkpoints converted from TensorFlow name LayerNorm parameters gamma/beta.
        if key.endswith(".gamma"):
            key = key[: -len("gamma")] + "weight"
        elif key.endswith(".beta"):
            key = key[: -len("beta")] + "bias"
        state[key] = value
    model = BertModel(config)
    load_into(model, state, weights, ignore_unexpected=True)  # pooler / MLM head / position_ids unused
    return model.eval()


# -- phone-level features ---------------------------------------------------------------------------------


def expand_to_phones(char_features: torch.Tensor, word2ph: Sequence[int]) -> torch.Tensor:
    """(n_chars, D) per-character vectors -> (D, sum(word2ph)): character i repeated word2ph[i] times."""
    if char_features.dim() != 2 or char_features.shape[0] != len(word2ph):
        raise ValueError(
            f"{len(word2ph)} word2ph entries for character features of shape {tuple(char_features.shape)}"
        )
    counts = torch.as_tensor(list(word2ph), dtype=torch.long, device=char_features.device)
    if (counts < 0).any():
        raise ValueError("word2ph entries must be non-negative")
    return char_features.repeat_interleave(counts, dim=0).T


def zero_phone_features(n_phones: int, dim: int = BERT_FEATURE_DIM) -> torch.Tensor:
    """The features GPT-SoVITS gives every non-`zh` chunk: zeros (dim, n_phones)."""
    return torch.zeros(dim, n_phones, dtype=torch.float32)


class BertFeatureExtractor:
    """Tokenizer + model: normalised Chinese text and its word2ph -> (1024, n_phones)."""

    def __init__(self, model: BertModel, tokenizer: BertTokenizer) -> None:
        if model.config.num_hidden_layers < FEATURE_LAYER_FROM_END - 1:
            raise FeatureModelFileError("the BERT model has too few layers for hidden_states[-3]")
        self.model = model
        self.tokenizer = tokenizer

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def token_ids(self, text: str) -> list[int]:
        """[CLS] + one id per character + [SEP].

        The official code assumes BERT tokenization yields one token per character of the
        normalised text (true for Chinese characters and punctuation). If it does not (Latin
        letters or digits merge into one WordPiece), each character is looked up on its own
        so the features still line up with word2ph, where the official code would fail.
        """
        ids = self.tokenizer.encode(text)
        if len(ids) - 2 != len(text):
            ids = self.tokenizer.encode_per_char(text)
        return ids

    @torch.inference_mode()
    def char_features(self, text: str) -> torch.Tensor:
        """hidden_states[-3] without [CLS]/[SEP]: (len(text), hidden)."""
        ids = torch.tensor([self.token_ids(text)], dtype=torch.long, device=next(self.model.parameters()).device)
        # hidden_states[-3] is the output of layer L-2, so the last two layers need not run.
        used = self.model.config.num_hidden_layers - (FEATURE_LAYER_FROM_END - 1)
        states = self.model.hidden_states(ids, num_layers=used)
        return states[used][0, 1:-1]

    def phone_features(self, norm_text: str, word2ph: Sequence[int]) -> torch.Tensor:
        """(hidden, sum(word2ph)) features for one `zh` chunk of normalised text."""
        if len(word2ph) != len(norm_text):
            raise ValueError(f"word2ph has {len(word2ph)} entries for {len(norm_text)} characters")
        return expand_to_phones(self.char_features(norm_text), word2ph)


def load_bert(folder: str | Path) -> BertFeatureExtractor:
    """Load the chinese-roberta-wwm-ext-large folder (config.json, weights, tokenizer.json or vocab.txt)."""
    return BertFeatureExtractor(load_bert_model(folder), BertTokenizer.from_folder(folder))
