"""Run the real Kaggle CLI (kaggle 2.2.5) dataset create/version path offline, for tests.

Only the network is replaced: ``requests.Session.send`` -- the single function
through which every HTTP request of this code path goes:
  * kagglesdk RPCs (KaggleHttpClient.call -> self._session.send):
      datasets.DatasetApiService/GetDatasetStatus   (create only: "slug taken?")
      blobs.BlobApiService/StartBlobUpload          (one per uploaded file)
      datasets.DatasetApiService/CreateDataset      (create)
      datasets.DatasetApiService/CreateDatasetVersion[ById] (version)
  * the byte upload KaggleApi.upload_complete -> session.put(create_url) -> send
Everything else (argparse, metadata validation, os.listdir walk, ignore
patterns, DirectoryArchive zipping, request (de)serialisation, resumable
upload bookkeeping, response handling and CLI printing) is the real code.

Usage:
    from upload_offline import uploaded_files
    r = uploaded_files("/path/to/folder")                       # create, zip
    r = uploaded_files(folder, ())                              # create, skip
    r = uploaded_files(folder, ("--dir-mode", "zip", "-m", "msg"), command="version")
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import zipfile
from urllib.parse import urlparse

import requests
from requests.structures import CaseInsensitiveDict

UPLOAD_HOST = "fake-upload.invalid"
FAKE_USER = "someone"


def _response(request, status, payload=None):
    r = requests.models.Response()
    r.status_code = status
    r.request = request
    r.url = request.url
    r.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
    r._content = json.dumps(payload if payload is not None else {}).encode()
    r.encoding = "utf-8"
    return r


@contextlib.contextmanager
def _offline_env(home):
    """Env that makes `import kaggle` / api.authenticate() succeed with no network.

    authenticate() order: access token (NETWORK: introspects the token) ->
    legacy username/key (no network) -> OAuth creds file -> anonymous.
    So: no KAGGLE_API_TOKEN, no ~/.kaggle/access_token(.txt), not "in a Kaggle
    notebook" (KAGGLE_KERNEL_RUN_TYPE), and KAGGLE_USERNAME + KAGGLE_KEY set.
    """
    cfg = os.path.join(home, "kaggle-config")
    os.makedirs(cfg, exist_ok=True)
    new = {
        "KAGGLE_USERNAME": FAKE_USER,
        "KAGGLE_KEY": "offline-dummy-key",
        "KAGGLE_CONFIG_DIR": cfg,
        "HOME": home,
    }
    drop = [
        "KAGGLE_API_TOKEN",
        "KAGGLE_KERNEL_RUN_TYPE",
        "KAGGLE_API_V1_TOKEN",
        "KAGGLE_DATA_PROXY_URL",
        "KAGGLE_API_ENVIRONMENT",
        "KAGGLE_PROXY",
    ]
    saved = {k: os.environ.get(k) for k in [*new, *drop]}
    os.environ.update(new)
    for k in drop:
        os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def uploaded_files(folder, argv_extra=("--dir-mode", "zip"), command="create") -> dict:
    folder = os.path.abspath(folder)
    blobs = {}  # token -> StartBlobUpload request body
    uploads = []  # ordered list of {name, size, members?}
    rpcs = []  # (rpc name, json body)
    final = {}

    def fake_send(self, request, **kwargs):
        url = urlparse(request.url)
        if url.hostname == UPLOAD_HOST:  # byte upload (PUT)
            if request.headers.get("Content-Range", "").startswith("bytes */"):
                return _response(request, 404)  # resume probe: "expired"
            body = request.body
            data = body.read() if hasattr(body, "read") else (body or b"")
            token = url.path.rsplit("/", 1)[-1]
            meta = blobs[token]
            entry = {
                "name": meta["name"],
                "size": len(data),
                "declared_size": int(meta.get("contentLength", 0)),
            }
            if meta["name"].endswith(".zip"):
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    entry["members"] = sorted(zf.namelist())
            uploads.append(entry)
            return _response(request, 200)

        rpc = url.path.rsplit("/", 1)[-1]  # .../v1/<service>/<Rpc>
        body = json.loads(request.body or b"{}")
        rpcs.append((rpc, body))
        if rpc == "GetDatasetStatus":  # -> "slug not in use"
            return _response(request, 404, {"code": 404, "message": "Not found"})
        if rpc == "StartBlobUpload":
            token = f"tok{len(blobs)}"
            blobs[token] = body
            return _response(
                request, 200, {"token": token, "createUrl": f"https://{UPLOAD_HOST}/{token}"}
            )
        if rpc in ("CreateDataset", "CreateDatasetVersion", "CreateDatasetVersionById"):
            final.update(rpc=rpc, body=body)
            return _response(
                request,
                200,
                {"ref": "x/y", "status": "ok", "url": "https://www.kaggle.com/datasets/x/y"},
            )
        raise AssertionError(f"unexpected network call: {request.method} {request.url}")

    home = tempfile.mkdtemp(prefix="kaggle_offline_home_")
    out, err = io.StringIO(), io.StringIO()
    with _offline_env(home):
        from kaggle import cli  # import-time authenticate() happens here (offline)

        real_send = requests.Session.send
        saved_argv = sys.argv
        requests.Session.send = fake_send
        sys.argv = ["kaggle", "datasets", command, "-p", folder, *argv_extra]
        code = 0
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                cli.main()
        except SystemExit as e:
            code = e.code
        finally:
            requests.Session.send = real_send
            sys.argv = saved_argv
    if code not in (0, None):
        raise RuntimeError(
            f"kaggle CLI exited {code}\nstdout:\n{out.getvalue()}\nstderr:\n{err.getvalue()}"
        )

    body = final.get("body", {})
    inner = body.get("body", body)  # version requests nest the body
    tokens = [f.get("token") for f in inner.get("files", [])]
    by_token = dict(zip(blobs, uploads, strict=True))
    return {
        "files": uploads,  # in upload order
        "request_files": [by_token[t]["name"] for t in tokens if t in by_token],
        "rpc": final.get("rpc"),
        "id": (
            f"{body.get('ownerSlug')}/{body.get('slug')}"
            if "slug" in body
            else f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
            if "datasetSlug" in body
            else body.get("id")
        ),
        "title": body.get("title"),
        "license": body.get("licenseName"),
        "is_private": body.get("isPrivate"),
        "version_notes": inner.get("versionNotes"),
        "request_body": body,
        "rpcs": [r for r, _ in rpcs],
        "stdout": out.getvalue(),
    }
