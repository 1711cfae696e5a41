"""Mandarin tone sandhi for the GPT-SoVITS Chinese frontend.

Rewrites the citation tones that pypinyin gives per word into spoken tones: neutral-tone (5)
suffixes and fixed words, 不 and 一 changes, and third-tone sandhi (3-3 -> 2-3). Before that,
jieba's segmentation is re-merged (不 + next word, verb-一-verb, reduplications, runs of third
tones, 儿) so that the rules see the units they were written for. The rule set and word lists are
those of the PaddleSpeech frontend that GPT-SoVITS uses.
"""

from __future__ import annotations

import jieba_fast
from pypinyin import Style, lazy_pinyin

# Two-character words whose second syllable is spoken in the neutral tone.
MUST_NEUTRAL_TONE_WORDS = frozenset(
    """
一辈 丈人 丈夫 上司 上头 下巴 下水 不在 不由 世故 东家 东西 两口 丧气 丫头 主意 买卖 事情 云彩 交情 亲家 亲戚 人家 什么 介绍 休息 伙计 似的 位置 体面 作坊 佩服
使唤 便宜 倒腾 兄弟 先生 关系 养活 冒失 冤家 冤枉 冷战 凉快 凑合 凤凰 出息 分析 利害 利索 利落 别扭 刺激 刺猬 前头 力气 功夫 动弹 动静 勤快 匀称 包涵 包袱 千斤
厉害 厚道 口袋 叫唤 吆喝 合同 吉他 名堂 名字 后头 吓唬 含糊 告示 告诉 和尚 咕噜 咖喱 咳嗽 哆嗦 哈欠 哑巴 唾沫 商量 喇叭 喇嘛 喉咙 喜欢 喽啰 嘀咕 嘟囔 嘱咐 嘴巴
困难 在乎 地方 地道 壮实 外甥 多么 多少 大人 大夫 大意 大方 大爷 太阳 头发 女婿 奴才 妖精 妥当 妯娌 姐夫 姑娘 委屈 姥爷 娘家 婆家 媒人 媳妇 嫁妆 字号 学生 学问
官司 实在 客气 家伙 寒碜 寡妇 对付 对头 将就 小伙 小气 少爷 尾巴 屁股 岁数 工夫 差事 巴掌 巴结 师傅 师父 希罕 帐篷 帮手 干事 幸福 庄稼 应酬 开通 弄堂 弟兄 张罗
得罪 心思 志气 忙活 快活 念叨 念头 怎么 思量 怪物 悟性 情形 惦记 意思 意识 懒得 戒指 扁担 扎实 扑腾 打发 打听 打扮 打点 打算 打量 扫帚 扫把 折腾 护士 报复 抬举
拖沓 招呼 招牌 拨弄 拳头 拾掇 指头 指甲 挑剔 挖苦 提防 收成 收拾 故事 新鲜 时候 明白 暖和 月亮 月饼 朋友 木匠 木头 本事 机灵 枇杷 枕头 架势 柴火 栅栏 核桃 棉花
棒槌 棺材 槟榔 模糊 欺负 正经 母亲 比方 泥鳅 活泼 浪头 消息 清楚 温和 溜达 滑溜 漂亮 火候 灯笼 炊帚 点心 烂糊 烟筒 烧饼 热闹 照顾 熟悉 爱人 父亲 爽快 牌楼 牙碜
牢骚 牲口 特务 状元 狐狸 玄乎 玫瑰 玻璃 琉璃 琢磨 琵琶 甘蔗 甜头 生意 畜生 疏忽 疙瘩 疟疾 痛快 痢疾 白净 盘算 盘缠 相声 眉毛 眨巴 眯缝 眼睛 知识 石匠 石头 石榴
码头 砚台 祖宗 福气 秀才 秀气 秧歌 称呼 稀罕 稳当 窗户 窝囊 窟窿 笑话 笑语 笤帚 答应 算盘 算计 篱笆 簸箕 粮食 精神 糊涂 糟蹋 糨糊 累赘 红火 结实 编辑 罐头 罗嗦
翻腾 老太 老头 老婆 老实 老爷 耳朵 耷拉 耽搁 耽误 聪明 胡同 胡琴 胡萝 胭脂 胳膊 能耐 脊梁 脑袋 脾气 膏药 自在 舌头 舒坦 舒服 芝麻 苍蝇 苗头 苗条 荒唐 荸荠 菩萨
萝卜 葡萄 葫芦 薄荷 蘑菇 蚂蚱 蛤蟆 蜡烛 行当 行李 街坊 衙门 衣服 衣裳 补丁 裁缝 见识 规矩 计划 认识 记号 记性 讲究 豆腐 财主 费用 趔趄 跟头 跳蚤 踏实 转悠 软和
过去 运气 这个 这么 连累 迷糊 造化 逻辑 道士 邋遢 那个 那么 部分 里头 里脊 钥匙 铁匠 铃铛 铺盖 锄头 门道 闺女 阔气 队伍 难为 风筝 馄饨 馒头 首饰 马虎 骆驼 骨头
高粱 鸳鸯 麻利 麻烦
""".split()
)

# Words that look like neutral-tone candidates (reduplication, 子 suffix...) but keep full tones.
MUST_NOT_NEUTRAL_TONE_WORDS = frozenset(
    """
人人 以下 佼佼 冉冉 分子 卵子 原子 吵吵 哈哈 女子 娃哈哈 学子 家家户户 局地 干嘛 幺幺 恳恳 想想 打打 攘攘 数数 整整 死死 熙熙 瓜子 电子 男子 留得 石子 算子 考考
耕地 花花草草 莘莘 莲子 落地 虎虎 袅袅 量子 青青
""".split()
)

_PUNCTUATION = "：，；。？！“”‘’':,;.?!"
_NEUTRAL_SUFFIX_PARTICLES = "吧呢哈啊呐噻嘛吖嗨呐哦哒额滴哩哟喽啰耶喔诶"

Segment = list  # [word, part_of_speech]; mutable so merges can extend the word in place


def _neutral(final: str) -> str:
    return final[:-1] + "5"


def _with_tone(final: str, tone: str) -> str:
    return final[:-1] + tone


def _all_third_tone(finals: list[str]) -> bool:
    return all(final[-1] == "3" for final in finals)


def _finals_tone3(word: str) -> list[str]:
    return lazy_pinyin(word, neutral_tone_with_five=True, style=Style.FINALS_TONE3)


def split_word(word: str) -> list[str]:
    """Split a word in two around its shortest search-mode sub-word (used for 3-char words)."""
    shortest = sorted(jieba_fast.cut_for_search(word), key=len)[0]
    if word.find(shortest) == 0:
        return [shortest, word[len(shortest):]]
    return [word[: -len(shortest)], shortest]


def _neutral_sandhi(word: str, pos: str, finals: list[str]) -> list[str]:
    for j in range(1, len(word)):
        # Reduplicated nouns/verbs/adjectives (奶奶, 看看) take a neutral second syllable.
        if word[j] == word[j - 1] and pos[0] in "nva" and word not in MUST_NOT_NEUTRAL_TONE_WORDS:
            finals[j] = _neutral(finals[j])
    ge_index = word.find("个")
    last = word[-1] if word else ""
    if last and last in _NEUTRAL_SUFFIX_PARTICLES:
        finals[-1] = _neutral(finals[-1])
    elif last and last in "的地得":
        finals[-1] = _neutral(finals[-1])
    elif len(word) == 1 and word in "了着过" and pos in {"ul", "uz", "ug"}:
        finals[-1] = _neutral(finals[-1])
    elif len(word) > 1 and last in "们子" and pos in {"r", "n"} and word not in MUST_NOT_NEUTRAL_TONE_WORDS:
        finals[-1] = _neutral(finals[-1])
    elif len(word) > 1 and last in "上下里" and pos in {"s", "l", "f"}:
        finals[-1] = _neutral(finals[-1])
    elif len(word) > 1 and last in "来去" and word[-2] in "上下进出回过起开":
        finals[-1] = _neutral(finals[-1])
    elif (ge_index >= 1 and (word[ge_index - 1].isnumeric() or word[ge_index - 1] in "几有两半多各整每做是")) or (
        word == "个"
    ):
        finals[ge_index] = _neutral(finals[ge_index])
    elif word in MUST_NEUTRAL_TONE_WORDS or word[-2:] in MUST_NEUTRAL_TONE_WORDS:
        finals[-1] = _neutral(finals[-1])

    parts = split_word(word)
    head = len(parts[0])
    part_finals = [finals[:head], finals[head:]]
    for part, sub_finals in zip(parts, part_finals, strict=True):
        if part in MUST_NEUTRAL_TONE_WORDS or part[-2:] in MUST_NEUTRAL_TONE_WORDS:
            sub_finals[-1] = _neutral(sub_finals[-1])
    return part_finals[0] + part_finals[1]


def _bu_sandhi(word: str, finals: list[str]) -> list[str]:
    if len(word) == 3 and word[1] == "不":  # 看不懂: the middle 不 is neutral
        finals[1] = _neutral(finals[1])
        return finals
    for i, char in enumerate(word):
        if char == "不" and i + 1 < len(word) and finals[i + 1][-1] == "4":
            finals[i] = _with_tone(finals[i], "2")
    return finals


def _yi_sandhi(word: str, finals: list[str]) -> list[str]:
    if "一" in word and all(c.isnumeric() for c in word if c != "一"):
        return finals  # inside a number 一 keeps tone 1
    if len(word) == 3 and word[1] == "一" and word[0] == word[-1]:
        finals[1] = _neutral(finals[1])  # 看一看
    elif word.startswith("第一"):
        finals[1] = _with_tone(finals[1], "1")
    else:
        for i, char in enumerate(word):
            if char == "一" and i + 1 < len(word):
                if finals[i + 1][-1] == "4":
                    finals[i] = _with_tone(finals[i], "2")
                elif word[i + 1] not in _PUNCTUATION:
                    finals[i] = _with_tone(finals[i], "4")
    return finals


def _three_sandhi(word: str, finals: list[str]) -> list[str]:
    if len(word) == 2 and _all_third_tone(finals):
        finals[0] = _with_tone(finals[0], "2")
    elif len(word) == 3:
        parts = split_word(word)
        if _all_third_tone(finals):
            if len(parts[0]) == 2:
                finals[0] = _with_tone(finals[0], "2")
                finals[1] = _with_tone(finals[1], "2")
            elif len(parts[0]) == 1:
                finals[1] = _with_tone(finals[1], "2")
        else:
            head = len(parts[0])
            groups = [finals[:head], finals[head:]]
            for i, sub in enumerate(groups):
                if _all_third_tone(sub) and len(sub) == 2:
                    sub[0] = _with_tone(sub[0], "2")
                elif i == 1 and not _all_third_tone(sub) and sub[0][-1] == "3" and groups[0][-1][-1] == "3":
                    groups[0][-1] = _with_tone(groups[0][-1], "2")
            finals = groups[0] + groups[1]
    elif len(word) == 4:
        # Idioms: treat as two 2-syllable halves.
        groups = [finals[:2], finals[2:]]
        finals = []
        for sub in groups:
            if _all_third_tone(sub):
                sub[0] = _with_tone(sub[0], "2")
            finals += sub
    return finals


def modified_tone(word: str, pos: str, finals: list[str]) -> list[str]:
    """Apply 不, 一, neutral-tone and third-tone rules to one word's toned finals."""
    finals = _bu_sandhi(word, finals)
    finals = _yi_sandhi(word, finals)
    finals = _neutral_sandhi(word, pos, finals)
    return _three_sandhi(word, finals)


# --- re-merging jieba's segmentation ---------------------------------------------------------------


def _merge_bu(segments: list[tuple[str, str]]) -> list[Segment]:
    merged: list[Segment] = []
    previous = ""
    for word, pos in segments:
        if previous == "不":
            word = previous + word
        if word != "不":
            merged.append([word, pos])
        previous = word
    if previous == "不":
        merged.append([previous, "d"])
    return merged


def _merge_yi(segments: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    i = 0
    while i < len(segments):
        word, pos = segments[i]
        if i >= 1 and word == "一" and i + 1 < len(segments):
            last = merged[-1] if merged else segments[i - 1]
            following = segments[i + 1]
            if last[0] == following[0] and last[1] == "v" and following[1] == "v":
                merged[-1] = [last[0] + "一" + following[0], last[1]]
                i += 2
                continue
        merged.append([word, pos])
        i += 1
    result: list[Segment] = []
    for word, pos in merged:
        if result and result[-1][0] == "一":
            result[-1][0] = result[-1][0] + word
        else:
            result.append([word, pos])
    return result


def _merge_reduplication(segments: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for word, pos in segments:
        if merged and word == merged[-1][0]:
            merged[-1][0] = merged[-1][0] + word
        else:
            merged.append([word, pos])
    return merged


def _is_reduplication(word: str) -> bool:
    return len(word) == 2 and word[0] == word[1]


def _merge_third_tones(segments: list[Segment], whole_words: bool) -> list[Segment]:
    """Join neighbours that are all third tone (whole_words) or meet on a 3-3 boundary."""
    finals = [_finals_tone3(word) for word, _ in segments]
    merged: list[Segment] = []
    merged_into_previous = [False] * len(segments)
    for i, (word, pos) in enumerate(segments):
        if i >= 1 and not merged_into_previous[i - 1]:
            if whole_words:
                joinable = _all_third_tone(finals[i - 1]) and _all_third_tone(finals[i])
            else:
                joinable = finals[i - 1][-1][-1] == "3" and finals[i][0][-1] == "3"
            if joinable:
                previous = segments[i - 1][0]
                if not _is_reduplication(previous) and len(previous) + len(word) <= 3:
                    merged[-1][0] = merged[-1][0] + word
                    merged_into_previous[i] = True
                    continue
        merged.append([word, pos])
    return merged


def _merge_er(segments: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for i, (word, pos) in enumerate(segments):
        if i >= 1 and word == "儿" and segments[i - 1][0] != "#":
            merged[-1][0] = merged[-1][0] + word
        else:
            merged.append([word, pos])
    return merged


def pre_merge_for_modify(segments: list[tuple[str, str]]) -> list[Segment]:
    """Re-merge jieba (word, pos) pairs into the units the sandhi rules expect."""
    merged = _merge_bu(segments)
    # The official code logs and skips a merge step that raises (e.g. on empty words); so do we.
    try:
        merged = _merge_yi(merged)
    except (IndexError, TypeError):
        pass
    merged = _merge_reduplication(merged)
    for whole_words in (True, False):
        try:
            merged = _merge_third_tones(merged, whole_words)
        except IndexError:
            pass
    return _merge_er(merged)
