"""`import kerasllm`: cheap, stages reachable from the root, and enough for
`keras.saving.load_model(..., safe_mode=True)` in whatever order Keras comes."""

import pathlib
import re

import keras
import numpy as np
import pytest

import kerasllm
from helpers import REPO_ROOT, run_in_fresh_process


def test_every_module_that_registers_a_class_is_registered_by_the_root():
    package = pathlib.Path(REPO_ROOT) / "kerasllm"
    registering = set()
    for path in package.rglob("*.py"):
        if re.search(r"^@keras\.saving\.register_keras_serializable", path.read_text(encoding="utf-8"), re.M):
            module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
            registering.add(module)
    covered = lambda module: any(
        module == name or module.startswith(name + ".") for name in kerasllm.SERIALIZABLE_MODULES
    )
    assert {m for m in registering if not covered(m)} == set()


def test_subpackages_are_reachable_from_the_root():
    assert kerasllm.layers.TransformerBlock.__name__ == "TransformerBlock"
    assert kerasllm.models.GPT.__name__ == "GPT"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        kerasllm.nothing  # noqa: B018


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A compiled GPT (kerasllm loss and optimizer) and one plain, as .keras files."""
    folder = tmp_path_factory.mktemp("saved")
    model = kerasllm.models.GPT.from_preset(
        "tiny", vocab_size=50, num_layers=1, hidden_dim=32, num_heads=2, intermediate_dim=64
    )
    model.save(folder / "plain.keras")
    model.compile(optimizer=kerasllm.training.AdamW(1e-3), loss=kerasllm.training.LanguageModelLoss())
    model.save(folder / "compiled.keras")
    ids = np.arange(12, dtype="int32").reshape(2, 6)
    np.save(folder / "logits.npy", keras.ops.convert_to_numpy(model(ids)))
    return folder


@pytest.mark.parametrize(
    "imports",
    [
        "import kerasllm, keras",  # Keras after kerasllm: registered when it loads
        "import keras, kerasllm",  # Keras first: registered by the root
        "import kerasllm.models, keras",  # Keras imported halfway through a stage
    ],
)
def test_import_kerasllm_is_enough_to_load(saved, imports):
    out = run_in_fresh_process(
        f"""
        import sys
        {imports}
        import numpy as np
        folder = {str(saved)!r}
        plain = keras.saving.load_model(folder + "/plain.keras", safe_mode=True)
        compiled = keras.saving.load_model(folder + "/compiled.keras", safe_mode=True)
        ids = np.arange(12, dtype="int32").reshape(2, 6)
        diff = np.abs(keras.ops.convert_to_numpy(plain(ids)) - np.load(folder + "/logits.npy")).max()
        print(type(plain).__name__, type(compiled.optimizer).__module__, type(compiled.loss).__name__, diff)
        """,
        env={"KERAS_BACKEND": keras.config.backend()},
    )
    assert out.split() == ["GPT", "kerasllm.training.optimizers", "LanguageModelLoss", "0.0"]


def test_import_kerasllm_does_not_import_keras():
    out = run_in_fresh_process(
        """
        import sys, kerasllm
        print("keras" in sys.modules, "tensorflow" in sys.modules)
        """
    )
    assert out.split() == ["False", "False"]


# Where a framework may be named inside the backend-neutral packages, and why:
# compiling a function needs the backend's own facility (Keras has no public
# backend-neutral "compile this function"), and TF distribution strategies are TF's.
BACKEND_BRIDGES = {"kerasllm/generation/compile.py", "kerasllm/training/distribution.py"}


def test_backend_neutral_packages_name_no_framework_outside_the_bridges():
    import ast

    offenders = []
    for package in ("layers", "models", "training", "generation", "finetune", "alignment"):
        for path in sorted((pathlib.Path(REPO_ROOT) / "kerasllm" / package).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] in ("tensorflow", "jax", "torch") and relative not in BACKEND_BRIDGES:
                        offenders.append(f"{relative}:{node.lineno} imports {name}")
    assert offenders == []
