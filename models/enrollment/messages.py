"""Plain-language advice for every enrollment problem, in English and Chinese.

One catalogue for the upload report and the live coach, keyed by problem code; `{...}` fields are
filled from the measurement that found the problem.
"""

from __future__ import annotations

CATALOGUE: dict[str, dict[str, str]] = {
    "too_little_speech": {
        "en": "Only {speech_s:.0f} s of speech was found; read the whole script (about a minute) so the "
        "voice has enough to learn from.",
        "zh": "只检测到 {speech_s:.0f} 秒语音。请读完整篇稿子（约一分钟），声音才能学得像。",
    },
    "no_speech": {
        "en": "No speech was found in this recording. Check that the right microphone is selected and "
        "read the script aloud.",
        "zh": "录音里没有检测到说话声。请确认选对了麦克风，然后把稿子读出来。",
    },
    "noise": {
        "en": "Background noise is loud (speech is only {snr_db:.0f} dB above it). Record in a quiet room, "
        "away from fans and open windows, and keep the microphone close.",
        "zh": "背景噪音较大（语音只比噪音高 {snr_db:.0f} dB）。请在安静的房间录音，远离风扇和窗户，麦克风靠近一些。",
    },
    "clipping": {
        "en": "The recording is distorted: {clipped_pct:.2f}% of the samples hit the limit. Turn the "
        "microphone gain down or move a little further away.",
        "zh": "录音有削波失真（{clipped_pct:.2f}% 的采样达到上限）。请调低麦克风增益，或离麦克风稍远一点。",
    },
    "too_quiet": {
        "en": "The voice is very quiet ({level_db:.0f} dBFS). Speak up, move closer to the microphone, or "
        "raise its gain.",
        "zh": "声音太小（{level_db:.0f} dBFS）。请大声一点、靠近麦克风，或调高麦克风增益。",
    },
    "narrow_band": {
        "en": "The audio sounds like a phone line (nothing above {bandwidth_khz:.1f} kHz). Record directly "
        "with a microphone rather than through a call or a voice-message app.",
        "zh": "音频像电话音质（{bandwidth_khz:.1f} kHz 以上没有声音）。请直接用麦克风录音，不要通过通话或语音消息应用。",
    },
    "music": {
        "en": "Music or a steady tone is playing in the background. Turn it off and record again.",
        "zh": "背景里有音乐或持续的嗡嗡声。请关掉后重新录音。",
    },
    "several_speakers": {
        "en": "More than one voice seems to be in this recording{where}. Only the person whose voice is "
        "being enrolled should speak.",
        "zh": "录音里似乎有不止一个人的声音{where}。请只让要录制声音的本人说话。",
    },
    "long_pauses": {
        "en": "There are long silent stretches (the longest is {pause_s:.0f} s). That is fine, but reading "
        "straight through gives a more natural voice.",
        "zh": "录音中有较长的停顿（最长 {pause_s:.0f} 秒）。不影响使用，但连贯地读下去效果更自然。",
    },
    "too_fast": {
        "en": "You are reading quickly ({ratio:.1f}x the usual pace). Speak a little slower, as if telling "
        "a friend.",
        "zh": "语速偏快（约为正常的 {ratio:.1f} 倍）。请稍微放慢，像跟朋友聊天一样。",
    },
    "too_slow": {
        "en": "You are reading slowly ({ratio:.1f}x the usual pace). Read at your normal speaking speed.",
        "zh": "语速偏慢（约为正常的 {ratio:.1f} 倍）。请用平时说话的速度朗读。",
    },
    "transcript_mismatch": {
        "en": "What was said does not match the words it should say (skipped words, ad-libs or another "
        "language), so no clip has a transcript the clone can trust. Read the sentences exactly as written "
        "and record again.",
        "zh": "录音里说的话和应读的文字对不上（漏读、加词或换了语言），没有哪一段的文字稿可信。请严格按文字朗读后重新录音。",
    },
    "sentences_not_read": {
        "en": "Not heard as written (skipped, changed or unclear): sentence {numbers}. Read it again exactly "
        "as written, or leave it out.",
        "zh": "第 {numbers} 句没有按文字读出来（漏读、改动或不清楚）。请按原文重读，或者去掉这一句。",
    },
    "transcript_unverified": {
        "en": "The words of the reference clip could not be checked: there is no speech recognition for "
        "this language on this server (`voxroom models pull asr` adds it). The clone is only as good as "
        "that transcript, so make sure you read the script exactly.",
        "zh": "无法核对参考片段里说的话：本服务器没有这种语言的语音识别（运行 `voxroom models pull asr` 可以添加）。"
        "克隆效果取决于文字稿是否准确，请确认你严格按稿朗读。",
    },
    "transcript_recognised": {
        "en": "No transcript was given, so the reference clip's words come from speech recognition and may "
        "be wrong. Type exactly what you said in the recording for a better clone.",
        "zh": "没有提供文字稿，参考片段的文字来自语音识别，可能有错。请填写录音中说的原话，克隆效果会更好。",
    },
}


def advice(code: str, lang: str = "en", **values: float | str) -> str:
    """The message for `code` in `lang` ("en" or "zh"; anything else gets English)."""
    entry = CATALOGUE[code]
    return entry.get(lang, entry["en"]).format(**values)
