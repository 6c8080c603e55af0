"""The opt-in cleaning filters: inappropriate content, quality, language, PII."""

import pytest

from kerasllm.data import (
    CleaningConfig,
    InappropriateContent,
    LanguageFilter,
    PiiScrubber,
    QualityFilter,
    clean_documents,
    corpus_statistics,
    identify_language,
)
from kerasllm.data.filters import fold, luhn_valid, word_count


def test_fold_catches_full_width_case_and_kana_variants():
    assert fold("ＦＵＣＫ") == "fuck"
    assert fold("ｼﾈ") == fold("シネ") == fold("しね") == "しね"
    assert fold("ガイド") == fold("ｶﾞｲﾄﾞ")


def test_inappropriate_drops_variants_and_respects_english_word_edges():
    step = InappropriateContent()
    assert step("もう死ね。") is None
    assert step("このｸｿ野郎め") is None  # half-width kana
    assert step("What the ＦＵＣＫ") is None
    assert step("shiitake and Scunthorpe") == "shiitake and Scunthorpe"
    assert step("こんにちは、世界。") == "こんにちは、世界。"
    # Found in Debian's docs: katakana words folded to hiragana must not match.
    assert step("シネマとリネームしネームスペース") is not None
    assert step.details["matches"] == 3


def test_inappropriate_mask_covers_the_source_characters(tmp_path):
    step = InappropriateContent(["badword", "re:ab+c", "悪口"], action="mask")
    assert step("a Badword here") == "a ******* here"
    assert step("xx ABBBC yy") == "xx ***** yy"
    assert step("ｱｸ悪口ﾃﾞｽ") == "ｱｸ**ﾃﾞｽ"  # half-width kana around keep their place
    listed = tmp_path / "words.txt"
    listed.write_text("# my list\nsecretword\n", encoding="utf-8")
    config = CleaningConfig(inappropriate=True, inappropriate_words=str(listed),
                            near_dedup=False)
    kept, report = clean_documents(["a secretword b", "fine text", "死ね"], config)
    assert kept == ["fine text"]
    assert report.step("inappropriate").removed == 2
    assert report.step("inappropriate").details == {"matches": 2}


def test_quality_heuristics_hold_for_japanese():
    step = QualityFilter()
    prose = "吾輩は猫である。名前はまだ無い。\nどこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所で泣いていた事だけは記憶している。\n"
    assert step(prose) == prose
    assert word_count("吾輩は猫である") == 3.5 and word_count("two words") == 2
    assert step("短い。") is None  # too short
    menu = "\n".join(["ホーム", "概要", "ダウンロード", "お問い合わせ"] * 5)
    assert step.reason(menu) == "short_lines"
    hashtags = "今日は良い天気でした #天気 #散歩 #写真 #休日 #晴れ #東京 #公園 #春 #花 #猫 #犬。"
    assert step.reason(hashtags) == "symbols"
    no_end = "\n".join(f"これは句読点で終わらない長めの行です {i}" for i in range(10))
    assert step.reason(no_end) == "no_punctuation"
    assert step.reason("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.") == (
        "lorem_ipsum"
    )
    assert step.details["too_short"] == 1


def test_language_identification_ships_its_model_and_filters():
    assert identify_language("吾輩は猫である。名前はまだ無い。")[0] == "ja"
    assert identify_language("This is an English sentence about cats.")[0] == "en"
    step = LanguageFilter(["ja"], threshold=0.5)
    assert step("吾輩は猫である。名前はまだ無い。") is not None
    assert step("Ceci est une phrase en français sur les chats.") is None
    assert step.details["languages"] == {"ja": 1, "fr": 1}
    stats = corpus_statistics(
        ["吾輩は猫である。名前はまだ無い。" * 3, "This is an English sentence about cats."],
        languages=True,
    )
    assert list(stats["languages"]) == ["ja", "en"]
    assert sum(stats["languages"].values()) == pytest.approx(1.0)


def test_pii_scrubbing_with_counts():
    step = PiiScrubber()
    text = (
        "連絡先: taro.yamada@example.co.jp、電話 03-1234-5678 / 090-1234-5678、"
        "+81 3-1234-5678, +1 (415) 555-0100. Server 192.168.0.1 and 2001:db8::1. "
        "Card 4111 1111 1111 1111; order 1234 5678 9012 3456; year 2024. "
        "Bug #746578 2014-11-15 is no card, though its 14 digits pass Luhn."
    )
    out = step(text)
    assert "example.co.jp" not in out and "<EMAIL>" in out
    assert out.count("<PHONE>") == 4
    assert out.count("<IP>") == 2
    assert "<CREDIT_CARD>" in out and "1234 5678 9012 3456" in out  # fails Luhn: kept
    assert "year 2024" in out
    assert step.details == {"credit_card": 1, "email": 1, "ip": 2, "phone": 4}
    assert luhn_valid("4111111111111111") and not luhn_valid("1234567890123456")


def test_filters_are_steps_of_the_report_in_order():
    config = CleaningConfig(pii=True, languages=["ja"], quality=True, inappropriate=True)
    docs = [
        "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗い所で泣いていた。連絡は a@b.jp まで。",
        "This English document is long enough to pass the quality filter easily.",
        "短い。",
    ]
    kept, report = clean_documents(docs, config)
    names = [s.name for s in report.steps]
    assert names.index("pii") < names.index("language") < names.index("quality")
    assert names.index("inappropriate") < names.index("exact_dedup")
    assert kept == [docs[0].replace("a@b.jp", "<EMAIL>")]
    assert report.step("pii").details["email"] == 1
    assert "pii: credit_card 0; email 1" in str(report)
    assert report.to_dict()["steps"][names.index("language")]["details"]["languages"]["en"] == 1
    with pytest.raises(ValueError, match="inappropriate_action"):
        CleaningConfig(inappropriate_action="hide")
    assert CleaningConfig(languages="ja,en").languages == ["ja", "en"]
