"""Reading scripts: about a minute of speech each, in sentences."""

from __future__ import annotations

import pytest

from voxroom.models.enrollment.scripts import SCRIPTS, expected_seconds, script_for, speech_units


@pytest.mark.parametrize("lang", ["en", "zh", "ja"])
def test_each_script_reads_in_about_a_minute(lang: str) -> None:
    script = SCRIPTS[lang]
    assert len(script.sentences) >= 8
    assert 45 <= expected_seconds(script.text, lang) <= 75
    assert all(s.strip() == s and s for s in script.sentences)


def test_units_and_lookup() -> None:
    assert speech_units("Hello there, it's 7 o'clock.", "en") == 5
    assert speech_units("你好，世界！", "zh") == 4
    assert script_for("zh-CN").lang == "zh" and script_for("ko").lang == "en"
