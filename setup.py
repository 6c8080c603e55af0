"""Package metadata for kerasllm.

Dependency ranges are pinned to the TensorFlow 2.21 line: tensorflow-text must
match TensorFlow's minor version exactly (its ops are compiled against it).
"""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"',
    (HERE / "kerasllm" / "version.py").read_text(),
    re.M,
).group(1)

EXTRAS = {
    # Test runner (in parallel over the machine's cores) and property tests.
    "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100"],
    # The JAX backend (our GPU path); CPU wheels here, CUDA wheels on a GPU box.
    "jax": ["jax>=0.5"],
    # Export and serving: TFLite interpreter and TF Serving's protos/gRPC stubs.
    "export": ["ai-edge-litert>=2.0", "tensorflow-serving-api>=2.21,<2.22"],
    # `kerasllm serve`: ASGI app + server, HTTP client (remote backend, tests),
    # the OpenAI client and a headless browser driver (tests and benchmark).
    "serve": [
        "starlette>=0.40",
        "uvicorn>=0.30",
        "httpx>=0.27",
        "grpcio>=1.60",
        "tensorflow-serving-api>=2.21,<2.22",
        "openai>=1.40",
        "playwright>=1.40",
    ],
    # Constellation members deployed as Ray Serve deployments (`ray:` members).
    "ray": ["ray[serve]>=2.9,<3"],
}
EXTRAS["all"] = sorted({dep for deps in EXTRAS.values() for dep in deps})

setup(
    name="kerasllm",
    version=VERSION,
    description=(
        "A Keras 3 / TensorFlow toolkit for the whole life of a language model: "
        "data, tokenizers, GPT layers, pretraining, fine-tuning, alignment, "
        "generation, export and serving."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["kerasllm", "kerasllm.*"]),
    include_package_data=True,
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-text>=2.21,<2.22",
        "keras>=3.15",
        "keras-hub>=0.32",
        "numpy>=1.26",
        "tokenizers>=0.21",
        "sentencepiece>=0.2",
        "pyyaml>=6",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "tensorboard>=2.21,<2.22",
        "datasketch>=1.6",
        "lxml>=5",  # HTML / XHTML text extraction (kerasllm.data.html)
        "py3langid>=0.3",  # language identification, model inside the wheel
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["kerasllm=kerasllm.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
