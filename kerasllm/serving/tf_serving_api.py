"""TensorFlow Serving's REST API, so a client written for TF Serving works unchanged.

    GET  /v1/models/NAME[/versions/V | /labels/L]             model_version_status
    GET  /v1/models/NAME[/versions/V | /labels/L]/metadata    signature defs
    POST /v1/models/NAME[/versions/V | /labels/L]:predict     instances / inputs

Errors are `{"error": "message"}` with the HTTP status TF Serving gives the
error's canonical code (see `errors.HTTP_STATUS`).
"""

import json
import re

from google.protobuf import json_format
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from kerasllm.serving.errors import ServingError, invalid, not_found
from kerasllm.serving.tensors import decode_predict_body, encode_predict_outputs

PATH = re.compile(
    r"(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<verb>/metadata|:predict|:classify|:regress)?"
)


def error_response(error):
    return JSONResponse({"error": error.message}, status_code=error.http_status)


def parse_path(path):
    """`(name, version, label, verb)` of what follows `/v1/models/`."""
    from kerasllm.serving.model_config import check_model_name

    match = PATH.fullmatch(path)
    if not match:
        raise not_found(f"Malformed request: /v1/models/{path}")
    check_model_name(match["name"])
    version = match["version"]
    if version is not None and not version.isdigit():
        raise invalid(f"Malformed request: version must be an integer. Received: {version!r}")
    return match["name"], version and int(version), match["label"], match["verb"]


def signature_def_map_json(signature_defs):
    return {
        name: json_format.MessageToDict(sig, preserving_proto_field_name=True)
        for name, sig in sorted(signature_defs.items())
    }


def status_json(manager, name, version, label):
    return {"model_version_status": manager.status(name, version, label)}


def metadata_json(manager, name, version, label):
    version, servable = manager.get(name, version, label)
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": signature_def_map_json(servable.signature_defs)}},
    }


def predict(manager, name, version, label, body):
    version, servable = manager.get(name, version, label)
    signature_name = body.get("signature_name") or "serving_default" if isinstance(body, dict) else None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    if not isinstance(signature_name, str):
        raise invalid(f"signature_name must be a string. Received: {signature_name!r}")
    signature_defs = servable.signature_defs
    servable.check_signature(signature_name)
    inputs, layout = decode_predict_body(body, signature_defs[signature_name])
    outputs = servable.predict(signature_name, inputs)
    return encode_predict_outputs(outputs, layout)


async def get_model(request, state):
    try:
        name, version, label, verb = parse_path(request.path_params["path"])
        if verb is None:
            return JSONResponse(status_json(state.manager, name, version, label))
        if verb == "/metadata":
            result = await run_in_threadpool(metadata_json, state.manager, name, version, label)
            return JSONResponse(result)
        raise not_found(f"Malformed request: GET /v1/models/{request.path_params['path']}")
    except ServingError as error:
        return error_response(error)


async def post_model(request, state):
    try:
        name, version, label, verb = parse_path(request.path_params["path"])
        if verb in ("/metadata", None):
            raise not_found(f"Malformed request: POST /v1/models/{request.path_params['path']}")
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise invalid(f"JSON Parse error: {error}") from None
        if verb != ":predict":
            import grpc

            raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                               f"{verb[1:]} is not served: the models here have predict signatures only.")
        result = await run_in_threadpool(predict, state.manager, name, version, label, body)
        return JSONResponse(result)
    except ServingError as error:
        return error_response(error)
