"""End to end through the command line on a tiny model: tasks make → finetune → evaluate-tasks."""

import json

import pytest

from kerasllm.cli import main

pytestmark = pytest.mark.slow

SHORT = ["--set", "steps=4", "--set", "log_every=2", "--set", "eval_every=4", "--set", "checkpoint_every=2",
         "--set", "warmup_steps=0", "--set", "batch_size=4", "--set", "eval_batches=1"]


def run_json(capsys, argv):
    assert main(argv) in (0, None)
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tasks")
    main(["tasks", "make", "--output", str(directory), "--tasks", "add,reverse", "--train", "8",
          "--test", "3", "--json"])
    return directory


def finetune(capsys, config, output, base, data, *extra):
    return run_json(capsys, [
        "finetune", "--config", f"recipes/configs/finetune/{config}.yaml", "--output", str(output),
        "--set", f"base={base}", "--set", "tasks=null", "--set", f"data={data / 'train.jsonl'}",
        "--set", f"eval_data={data / 'test.jsonl'}", *SHORT, *extra, "--json",
    ])


def test_sft_writes_a_model_directory_that_evaluate_tasks_reads(capsys, tmp_path, base_model_dir, task_files):
    import kerasllm

    result = finetune(capsys, "sft", tmp_path / "sft", base_model_dir, task_files)
    assert result["step"] == 4 and result["format"] == "messages"
    assert result["data"]["examples"] == 16 and result["trainable"]["fraction"] == 1.0
    model = kerasllm.load(result["model_dir"])
    assert model.metadata["finetune"]["format"] == "messages"
    assert all(w.trainable for w in model.weights)  # saved unfrozen
    scores = run_json(capsys, ["evaluate-tasks", "--model", result["model_dir"], "--tasks", "add,reverse",
                               "--test", "3", "--json"])
    assert set(scores) == {"tasks", "mean_accuracy"}
    assert set(scores["tasks"]) == {"add", "reverse"} and scores["tasks"]["add"]["n"] == 3
    run = json.loads((tmp_path / "sft" / "run.json").read_text())
    assert run["status"] == "complete" and (tmp_path / "sft" / "log.csv").is_file()
    # The same directory again needs --resume or --overwrite; --resume continues from the checkpoint.
    with pytest.raises(SystemExit):
        main(["finetune", "--config", "recipes/configs/finetune/sft.yaml", "--output", str(tmp_path / "sft"),
              "--set", f"base={base_model_dir}"])
    resumed = run_json(capsys, ["finetune", "--output", str(tmp_path / "sft"), "--resume", "--set", "steps=6",
                                "--json"])
    assert resumed["resumed_from"] == 4 and resumed["step"] == 6


def test_lora_writes_an_adapter(capsys, tmp_path, base_model_dir, task_files):
    result = finetune(capsys, "lora", tmp_path / "lora", base_model_dir, task_files)
    assert "adapter_dir" in result and result["trainable"]["fraction"] < 0.5
    scores = run_json(capsys, ["evaluate-tasks", "--model", base_model_dir, "--adapter", result["adapter_dir"],
                               "--tasks", "add", "--test", "2", "--json"])
    assert scores["tasks"]["add"]["n"] == 2


def test_partial_and_classification(capsys, tmp_path, base_model_dir):
    data = tmp_path / "cls"
    data.mkdir()
    lines = [{"text": f"{'good' if i % 2 else 'bad'} {i}", "label": i % 2} for i in range(12)]
    (data / "train.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    (data / "test.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines[:4]))
    result = finetune(capsys, "partial", tmp_path / "partial-cls", base_model_dir, data,
                      "--set", "format=classification", "--set", "num_classes=2", "--set", "trainable_blocks=1")
    assert result["format"] == "classification" and 0 < result["trainable"]["fraction"] < 1
