# Sourced by the GPU scripts in benchmarks/ (run from the repository root):
# the environment they all need on a machine with JAX + CUDA and no
# TensorFlow.
#
# Keras, namex and optree may be missing there: wheels put in .whl/ first
# (benchmarks/README.md says how) are installed into /tmp/site. Then the
# repository root goes on the path (the scripts import kerasllm and
# benchmarks.common) and Keras runs on JAX.
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
