"""benchmarks/profile_breakdown.py: kernels matched to model parts through the HLO."""

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location(
        "profile_breakdown", ROOT / "benchmarks" / "profile_breakdown.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Two blocks' layer-norm backward share one kernel (XLA's deduplicated_name);
# the optimizer update has its own.
HLO = """\
ENTRY %main {
  %fusion.7 = bf16[16,1024,768]{2,1,0} fusion(%a, %b), kind=kCustom, calls=%f1, metadata={op_name="jit(train_step)/transpose(jvp(block_0))/attention_norm/add_any" deduplicated_name="fusion.3" scheduling_name="fusion.7"}
  %fusion.3 = bf16[16,1024,768]{2,1,0} fusion(%c, %d), kind=kCustom, calls=%f1, metadata={op_name="jit(train_step)/transpose(jvp(block_1))/attention_norm/add_any" deduplicated_name="fusion.3" scheduling_name="fusion.3"}
  %loop_add_subtract_fusion = (f32[768]{0}, f32[768]{0}) fusion(%e), kind=kLoop, calls=%f2, metadata={op_name="jit(train_step)/adam_w/sub"}
}
"""


def test_kernels_are_grouped_by_model_part(tmp_path, capsys):
    script = load_script()
    (tmp_path / "hlo").mkdir()
    (tmp_path / "hlo" / "module_1.jit_train_step.sm_9.0a_gpu_after_optimizations.txt").write_text(HLO)
    result = {
        "steps": 2,
        "rows": [{
            "preset": "tiny", "model": "kerasllm", "step_ms": 5.0,
            "profile": {"busy_ms": 8.0, "ops": [
                {"name": "fusion_7", "ms": 4.0},
                {"name": "nvjet_sm90_tst_128x128", "ms": 3.0},
                {"name": "loop_add_subtract_fusion", "ms": 1.0},
            ]},
        }],
    }
    (tmp_path / "result.json").write_text(json.dumps(result))

    index, members = script.fusion_index(HLO)
    assert index["fusion_7"][0] == "fusion.3"
    assert index["fusion_7"][1] == "transpose(jvp(block_N))/attention_norm/add_any"
    assert members["fusion.3"] == 2

    script.main([str(tmp_path / "result.json"), str(tmp_path / "hlo")])
    out = capsys.readouterr().out
    totals = {
        line.rsplit(None, 1)[0].strip(): float(line.rsplit(None, 1)[1])
        for line in out.split("\n\n")[-1].strip().splitlines()[1:]
    }
    # Milliseconds per step: the profile covered two steps.
    assert totals == {"layer norm": 2.0, "matmul": 1.5, "optimizer": 0.5, "total": 4.0}


def test_a_result_without_a_profile_is_refused(tmp_path):
    script = load_script()
    (tmp_path / "result.json").write_text(json.dumps({"rows": [{"preset": "tiny", "model": "kerasllm"}]}))
    (tmp_path / "hlo").mkdir()
    with pytest.raises(SystemExit, match="no profile"):
        script.main([str(tmp_path / "result.json"), str(tmp_path / "hlo")])


def test_a_folder_without_hlo_names_the_folder(tmp_path):
    script = load_script()
    with pytest.raises(FileNotFoundError, match="after_optimizations"):
        script.hlo_text(str(tmp_path))
