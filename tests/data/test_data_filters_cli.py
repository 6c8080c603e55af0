"""`kerasllm data clean` filter flags, `data stats --languages`, `--html`."""

import json

from kerasllm.cli import main


def test_clean_filter_flags_and_stats_languages(tmp_path, capsys):
    corpus = tmp_path / "in.jsonl"
    docs = [
        "<p>吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"
        "何でも薄暗い所で泣いていた。連絡は taro@example.jp まで。</p>",
        "<p>This English page is long enough to pass every quality heuristic here.</p>",
        "<p>ｸｿ野郎。吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗い所。</p>",
    ]
    corpus.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs),
                      encoding="utf-8")
    out = tmp_path / "out.jsonl"
    main(["data", "clean", "--input", str(corpus), "--html", "always", "--pii",
          "--languages", "ja", "--quality", "--set", "quality_min_chars=20",
          "--inappropriate", "--output", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)
    kept = [json.loads(line)["text"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert kept == ["吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"
                    "何でも薄暗い所で泣いていた。連絡は <EMAIL> まで。"]
    steps = {step["name"]: step for step in summary["steps"]}
    assert steps["pii"]["details"]["email"] == 1
    assert steps["language"]["removed"] == 1 and steps["inappropriate"]["removed"] == 1
    assert summary["config"]["quality_min_chars"] == 20

    main(["data", "stats", "--input", str(corpus), "--html", "always", "--languages",
          "--json"])
    stats = json.loads(capsys.readouterr().out)
    assert set(stats["languages"]) == {"ja", "en"}
