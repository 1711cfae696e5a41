"""Reading scripts for enrollment: about a minute of varied, natural sentences per language.

The console shows one script sentence by sentence; because the text is known, the chosen reference
clip gets its transcript without speech recognition (reference.py). The sentences mix statements,
questions, numbers and exclamations so the voice is heard in several intonations. Texts written
for voxroom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Script:
    lang: str  # "zh", "en", "ja"
    title: str
    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        sep = "" if self.lang in ("zh", "ja") else " "
        return sep.join(self.sentences)


SCRIPTS: dict[str, Script] = {
    "en": Script(
        "en",
        "An evening at the harbour",
        (
            "Every evening, the old harbour fills with people who come to watch the boats return.",
            "Some of them bring coffee, others bring their children, and a few bring nothing but a camera.",
            "Have you ever noticed how quiet it gets just before the sun touches the water?",
            "The fishermen call out to each other as they tie their ropes to the iron rings.",
            "Yesterday one of them told me he had caught forty-two fish before seven o'clock.",
            "I did not believe him at first, but then he showed me the basket!",
            "A little further along, a woman sells warm bread from a blue wooden cart.",
            "She says the secret is to bake it slowly and to never rush the dough.",
            "When the lights come on, the whole street smells of salt, smoke and fresh pastry.",
            "If you visit this summer, stay until dark and listen to the bells from the lighthouse.",
        ),
    ),
    "zh": Script(
        "zh",
        "海边的傍晚",
        (
            "每天傍晚，老港口都会聚满来看渔船归来的人。",
            "有人带着咖啡，有人带着孩子，也有人只带了一台相机。",
            "你有没有注意到，太阳快要碰到海面的时候，周围会突然安静下来？",
            "渔夫们一边把绳子系在铁环上，一边互相大声打招呼。",
            "昨天有一位渔夫告诉我，他在早上七点以前就钓到了四十二条鱼。",
            "我一开始不相信，直到他把满满一筐鱼拿给我看！",
            "再往前走一点，有位阿姨推着蓝色的木头小车卖热乎乎的面包。",
            "她说做面包的秘诀就是慢慢烤，揉面的时候千万不能着急。",
            "路灯亮起来以后，整条街都飘着海盐、炊烟和新鲜点心的味道。",
            "如果你今年夏天来玩，一定要待到天黑，听听灯塔那边传来的钟声。",
            "那一刻你会明白，为什么这么多人每天都愿意回到这里。",
        ),
    ),
    "ja": Script(
        "ja",
        "港の夕暮れ",
        (
            "毎日夕方になると、古い港には船の帰りを見に来る人たちが集まります。",
            "コーヒーを持ってくる人もいれば、子どもを連れてくる人も、カメラだけを持ってくる人もいます。",
            "太陽が海に触れる直前、急に静かになることに気づいたことがありますか？",
            "漁師たちは鉄の輪にロープを結びながら、大きな声で呼びかけ合います。",
            "昨日ある漁師が、朝七時までに魚を四十二匹釣ったと教えてくれました。",
            "最初は信じられませんでしたが、かごいっぱいの魚を見せてくれたのです！",
            "少し先では、青い木の屋台で女性が温かいパンを売っています。",
            "おいしさの秘密は、ゆっくり焼いて、生地を決して急がせないことだそうです。",
            "街灯がともると、通り全体が潮と煙と焼きたてのお菓子の香りに包まれます。",
            "この夏に訪れるなら、暗くなるまで残って、灯台から聞こえる鐘の音を聴いてみてください。",
        ),
    ),
}

# Typical read-aloud pace: English words, Chinese characters, Japanese characters (kana and kanji,
# a kanji being ~2 morae) per second of speech, not counting pauses.
_UNITS_PER_SECOND = {"en": 2.7, "zh": 4.6, "ja": 6.5}


def speech_units(text: str, lang: str) -> int:
    """Words for English, spoken characters (no punctuation) for Chinese and Japanese."""
    if lang == "en":
        return len(re.findall(r"[A-Za-z0-9']+", text))
    return len(re.findall(r"[\w]", text))


def expected_seconds(text: str, lang: str) -> float:
    """Seconds of speech (pauses excluded) a typical reader needs for `text`."""
    return speech_units(text, lang) / _UNITS_PER_SECOND.get(lang, _UNITS_PER_SECOND["en"])


def script_for(lang: str) -> Script:
    """The script in `lang`, English when there is none."""
    return SCRIPTS.get(lang.split("-")[0].lower(), SCRIPTS["en"])
