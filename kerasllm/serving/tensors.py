"""TF Serving's REST JSON tensors: request bodies to numpy, outputs back to JSON.

Follows TF Serving's RESTful API: a predict body holds `signature_name` and
exactly one of `instances` (row format: a list with one entry per example,
each an object of named inputs, or a bare value when the signature takes one
input) or `inputs` (columnar: an object of named tensors, or one tensor).
Binary strings travel as `{"b64": "..."}`; string outputs whose name ends
in `_bytes` are sent that way, other strings as text.
"""

import base64
import binascii

import numpy as np

from kerasllm.serving.errors import invalid


def _decode(value):
    """JSON value → nested lists with `{"b64"}` and text turned into bytes."""
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise invalid(
                'A JSON object inside a tensor must be {"b64": "<base64 string>"}. '
                f"Received: {value!r}"[:300]
            )
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as error:
            raise invalid(f"Invalid base64 in a b64 value: {error}") from None
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if value is None:
        raise invalid("A tensor value may not be null.")
    return value


def _array(value, name):
    value = _decode(value)
    try:
        array = np.array(value, dtype=object)
    except ValueError as error:
        raise invalid(f"Input {name!r} is not a rectangular tensor: {error}") from None
    if array.dtype == object and array.size and not isinstance(array.flat[0], bytes):
        kinds = {type(v) for v in array.flat}
        if kinds & {list, dict}:
            raise invalid(f"Input {name!r} is not a rectangular tensor (ragged lists).")
        if bytes in kinds:
            raise invalid(f"Input {name!r} mixes strings and numbers.")
        array = np.array(array.tolist())
    return array


def decode_predict_body(body, signature_def):
    """`(signature inputs as numpy, "row" or "columnar")` of a predict body."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances == has_inputs:
        raise invalid(
            "Not both 'inputs' and 'instances' keys" if has_instances
            else "Missing 'inputs' or 'instances' key"
        )
    required = [k for k in signature_def.inputs if k not in signature_def.defaults]
    if has_instances:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid("'instances' must be a non-empty JSON list.")
        if all(isinstance(i, dict) and set(i) != {"b64"} for i in instances):
            keys = set(instances[0])
            for index, instance in enumerate(instances):
                if set(instance) != keys:
                    raise invalid(
                        f"Failed to process element: {index} of 'instances' list. All "
                        f"objects must have the same keys: expected {sorted(keys)}, got "
                        f"{sorted(instance)}."
                    )
            return {k: _array([i[k] for i in instances], k) for k in keys}, "row"
        if any(isinstance(i, dict) and set(i) != {"b64"} for i in instances):
            raise invalid("'instances' mixes named (object) and unnamed values.")
        if len(required) != 1:
            raise invalid(
                "'instances' is a plain list, but expecting list of objects as multiple "
                f"input tensors required as per tensorinfo_map: {sorted(required)}"
            )
        return {required[0]: _array(instances, required[0])}, "row"
    inputs = body["inputs"]
    if isinstance(inputs, dict) and set(inputs) != {"b64"}:
        return {k: _array(v, k) for k, v in inputs.items()}, "columnar"
    if len(required) != 1:
        raise invalid(
            "'inputs' is a single tensor, but the signature takes several named inputs: "
            f"{sorted(required)}"
        )
    return {required[0]: _array(inputs, required[0])}, "columnar"


def tensor_json(array, name):
    """A numpy array as TF Serving's JSON (strings as text, `*_bytes` outputs as b64)."""
    array = np.asarray(array)
    if array.dtype == object or array.dtype.kind in "SU":
        as_b64 = name.endswith("_bytes")

        def convert(value):
            if isinstance(value, list):
                return [convert(v) for v in value]
            if isinstance(value, str):
                value = value.encode("utf-8")
            if as_b64:
                return {"b64": base64.b64encode(value).decode("ascii")}
            return value.decode("utf-8", "replace")

        return convert(array.tolist())
    return array.tolist()


def encode_predict_outputs(outputs, layout):
    """`{"predictions": ...}` (row) or `{"outputs": ...}` (columnar)."""
    if layout == "columnar":
        if len(outputs) == 1:
            [(name, value)] = outputs.items()
            return {"outputs": tensor_json(value, name)}
        return {"outputs": {k: tensor_json(v, k) for k, v in outputs.items()}}
    sizes = {k: (np.asarray(v).shape[:1] or (None,))[0] for k, v in outputs.items()}
    batch = set(sizes.values())
    if len(batch) != 1 or None in batch:
        raise invalid(
            "Row format needs every output to have the same batch size (dimension 0); "
            f"received sizes {sizes}. Use the columnar 'inputs' format."
        )
    if len(outputs) == 1:
        [(name, value)] = outputs.items()
        return {"predictions": tensor_json(value, name)}
    columns = {k: tensor_json(v, k) for k, v in outputs.items()}
    rows = batch.pop()
    return {"predictions": [{k: columns[k][i] for k in columns} for i in range(rows)]}
