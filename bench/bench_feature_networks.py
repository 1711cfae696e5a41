"""Time GPT-SoVITS's feature networks at full size with random weights (CPU, fp32).

  python bench/bench_feature_networks.py [--threads 2] [--repeats 3]

Prints seconds per call for: chinese-hubert-base on a 10 s reference (+0.6 s pad), the
ERes2NetV2 v2Pro speaker embedding of a 10 s 32 kHz reference (resample + fbank + forward3),
and RoBERTa-wwm-ext-large phone features for 30 Chinese characters.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from voxroom.models.gpt_sovits.bert import BertConfig, BertFeatureExtractor, BertModel, BertTokenizer
from voxroom.models.gpt_sovits.hubert import HubertConfig, HubertModel, reference_ssl_content
from voxroom.models.gpt_sovits.speaker_verification import ERes2NetV2, v2pro_speaker_embedding


def timed(name: str, fn: Callable[[], object], repeats: int) -> None:
    fn()  # warm-up: first-call allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    print(f"{name:58s} best {min(times):6.3f} s   mean {sum(times) / len(times):6.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-bert", action="store_true", help="skip the 1.3 GB RoBERTa-large")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    hubert = HubertModel(HubertConfig()).eval()
    wav16k = 0.1 * torch.randn(160000)
    timed(
        "HuBERT base, 10 s reference (+0.6 s pad)",
        lambda: reference_ssl_content(hubert, wav16k),
        args.repeats,
    )

    sv = ERes2NetV2().eval()
    wav32k = 0.1 * torch.randn(320000)
    timed(
        "ERes2NetV2 v2Pro embedding, 10 s @32 kHz", lambda: v2pro_speaker_embedding(sv, wav32k), args.repeats
    )

    if not args.skip_bert:
        text = "今天天气很好我们一起去公园散步吧，这是参考音频的文本。二十九个字"
        vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *sorted(set(text))])}
        bert = BertFeatureExtractor(BertModel(BertConfig()).eval(), BertTokenizer(vocab))
        word2ph = [2] * len(text)
        timed(
            f"RoBERTa-large phone features, {len(text)} chars",
            lambda: bert.phone_features(text, word2ph),
            args.repeats,
        )


if __name__ == "__main__":
    main()
