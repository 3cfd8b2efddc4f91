#!/usr/bin/env python3
"""The AWS front of the test environment: a loopback HTTP proxy in front of moto.

moto accepts any web-identity token for any role, so on its own it proves nothing about IRSA.
This proxy forwards every request to moto, except that:

* STS AssumeRoleWithWebIdentity is first checked like an IAM trust policy: the token is sent to
  the apiserver in a TokenReview with the audiences the role trusts, and the authenticated
  `system:serviceaccount:<ns>:<sa>` must be one of the role's trusted subjects. Anything else is
  answered with AWS's AccessDenied (HTTP 403, STS's XML error shape). A role without a trust
  entry trusts nobody.
* Faults are injected on demand: N throttling errors, N server errors, N BatchGetSecretValue
  answers with per-secret errors, N answers delayed by some seconds (a slow AWS), N STS
  answers whose credentials expire some seconds from now (moto's last an hour), each for
  requests of one action whose identifiers match.
* Requests signed with an access key registered under `/lockstep-admin/route` go to another
  upstream (the moto that enforces IAM).
* CONNECT requests (the proxy as HTTPS_PROXY) are logged; a tunnel is opened only to loopback.
* With --tls-port, the same proxy also listens with TLS (a certificate of the environment's
  CA), for clients that must trust a private CA.

Tests drive it through `/lockstep-admin/`:
  POST /lockstep-admin/trust   {"role": ARN, "subjects": [...], "audiences": [...]}
  POST /lockstep-admin/fault   {"action": "secretsmanager.GetSecretValue", "match": ID,
                                "kind": "throttle"|"5xx"|"partial"|"delay"|"expires",
                                "count": N, "seconds": S (delay: at most 30; expires: from now)}
  POST /lockstep-admin/clear   {"match": ID}   drop the faults injected for ID
  POST /lockstep-admin/route   {"access_key_id": AKID, "upstream": NAME}
  GET  /lockstep-admin/log     every request seen: action, identifiers, region, status, fault

The log holds identifiers (secret and parameter names, role ARNs, reviewed usernames) and never
a request or response body, a token or a key.

Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import select
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADMIN = "/lockstep-admin/"
DEFAULT_AUDIENCES = ["sts.amazonaws.com"]
# Path prefixes (`/via/<label>/...`) let a test tell which configured endpoint a client used.
VIA = re.compile(r"^/via/([A-Za-z0-9_.\-]+)(/.*)?$")
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/([^/,\s]+)/")

# JSON request fields that name a resource (never a value).
ID_FIELDS = ("SecretId", "Name", "Path", "ResourceId", "RoleArn")
ID_LIST_FIELDS = ("SecretIdList", "Names")


class State:
    def __init__(self, upstreams: dict[str, str], kube_server: str, kube_ca: str, kube_token: str):
        self.lock = threading.Lock()
        self.upstreams = upstreams
        self.kube_server = kube_server
        self.kube_ctx = ssl.create_default_context(cafile=kube_ca)
        self.kube_token = kube_token
        self.trust: dict[str, dict] = {}
        self.faults: list[dict] = []
        self.routes: dict[str, str] = {}
        self.log: list[dict] = []

    def take_fault(self, action: str, ids: list[str]) -> dict | None:
        with self.lock:
            for f in self.faults:
                if f["count"] <= 0 or f["action"] != action:
                    continue
                if f.get("match") and not any(f["match"] in i for i in ids):
                    continue
                f["count"] -= 1
                return dict(f)
        return None

    def record(self, entry: dict) -> None:
        with self.lock:
            entry["seq"] = len(self.log)
            self.log.append(entry)


STATE: State


def request_ids(action: str, body: bytes, form: dict[str, list[str]] | None) -> list[str]:
    ids: list[str] = []
    if form is not None:
        ids.extend(form.get("RoleArn", []))
        return ids
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return ids
    if not isinstance(doc, dict):
        return ids
    for k in ID_FIELDS:
        if isinstance(doc.get(k), str):
            ids.append(doc[k])
    for k in ID_LIST_FIELDS:
        if isinstance(doc.get(k), list):
            ids.extend(str(v) for v in doc[k])
    for flt in doc.get("Filters") or doc.get("ParameterFilters") or []:
        if isinstance(flt, dict):
            ids.extend(str(v) for v in flt.get("Values") or [])
    return ids


def aws_error(protocol: str, status: int, code: str, message: str) -> tuple[int, dict, bytes]:
    request_id = str(uuid.uuid4())
    if protocol == "json":
        body = json.dumps({"__type": code, "message": message}).encode()
        return status, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code,
                        "x-amzn-RequestId": request_id}, body
    kind = "Sender" if status < 500 else "Receiver"
    body = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
    return status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body


def token_review(token: str, audiences: list[str]) -> tuple[bool, str, list[str]]:
    """(authenticated, username, audiences) from the apiserver."""
    body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                       "spec": {"token": token, "audiences": audiences}}).encode()
    u = urllib.parse.urlsplit(STATE.kube_server)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=STATE.kube_ctx, timeout=10)
    try:
        conn.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=body, headers={
            "Authorization": f"Bearer {STATE.kube_token}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        out = json.loads(resp.read() or b"{}")
    finally:
        conn.close()
    status = out.get("status") or {}
    return (bool(status.get("authenticated")), (status.get("user") or {}).get("username", ""),
            status.get("audiences") or [])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lockstep-awsproxy"

    def log_message(self, fmt: str, *args) -> None:  # requests are in /lockstep-admin/log
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, headers: dict, body: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "server",
                                 "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        # One request per connection: no keep-alive connection is ever closed under a client
        # that is about to reuse it.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc) -> None:
        self._send(status, {"Content-Type": "application/json"}, json.dumps(doc).encode())

    # ---------------------------------------------------------------------------------------
    # the admin endpoint

    def _admin(self, method: str, body: bytes) -> None:
        what = self.path[len(ADMIN):].split("?")[0]
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            return self._json(400, {"error": "the body is not JSON"})
        if method == "GET" and what == "log":
            with STATE.lock:
                return self._json(200, list(STATE.log))
        if method == "POST" and what == "trust":
            role = doc.get("role")
            if not role:
                return self._json(400, {"error": "role is required"})
            with STATE.lock:
                STATE.trust[role] = {"subjects": list(doc.get("subjects") or []),
                                     "audiences": list(doc.get("audiences") or DEFAULT_AUDIENCES)}
            return self._json(200, {"ok": True})
        if method == "POST" and what == "fault":
            kinds = ("throttle", "5xx", "partial", "delay", "expires")
            if doc.get("kind") not in kinds or not doc.get("action"):
                return self._json(400, {"error": f"action and kind ({', '.join(kinds)}) are required"})
            seconds = max(float(doc.get("seconds", 0)), 0.0)
            fault = {"action": doc["action"], "kind": doc["kind"], "count": int(doc.get("count", 1)),
                     "match": doc.get("match") or "",
                     "seconds": min(seconds, 30.0) if doc["kind"] == "delay" else seconds}
            with STATE.lock:
                STATE.faults.append(fault)
            return self._json(200, {"ok": True})
        if method == "POST" and what == "clear":
            with STATE.lock:
                STATE.faults = [f for f in STATE.faults if f.get("match") != (doc.get("match") or "")]
            return self._json(200, {"ok": True})
        if method == "POST" and what == "route":
            if doc.get("upstream") not in STATE.upstreams or not doc.get("access_key_id"):
                return self._json(400, {"error": "access_key_id and a known upstream are required"})
            with STATE.lock:
                STATE.routes[doc["access_key_id"]] = doc["upstream"]
            return self._json(200, {"ok": True})
        return self._json(404, {"error": f"unknown admin call {method} {what}"})

    # ---------------------------------------------------------------------------------------
    # AWS requests

    def _handle(self) -> None:
        body = self._read_body()
        if self.path.startswith(ADMIN):
            return self._admin(self.command, body)
        path, via = self.path, ""
        m = VIA.match(path)
        if m:
            via, path = m.group(1), m.group(2) or "/"
        auth = self.headers.get("Authorization") or ""
        cred = CREDENTIAL.search(auth)
        access_key, region, service = (cred.group(1), cred.group(2), cred.group(3)) if cred else ("", "", "")
        target = self.headers.get("X-Amz-Target")
        form = None
        if target:
            action, protocol = target, "json"
        else:
            ctype = self.headers.get("Content-Type") or ""
            form = urllib.parse.parse_qs(body.decode(errors="replace")) if \
                "x-www-form-urlencoded" in ctype else {}
            action = f"{service or 'sts'}.{(form.get('Action') or [''])[0]}"
            protocol = "query"
        ids = request_ids(action, body, form)
        entry = {"action": action, "ids": ids, "region": region, "service": service, "via": via,
                 "host": self.headers.get("Host", "")}
        upstream = STATE.routes.get(access_key, "default")
        entry["upstream"] = upstream

        # The trust check of AssumeRoleWithWebIdentity.
        if form is not None and action.endswith(".AssumeRoleWithWebIdentity"):
            role = (form.get("RoleArn") or [""])[0]
            token = (form.get("WebIdentityToken") or [""])[0]
            with STATE.lock:
                trust = STATE.trust.get(role)
            subject, allowed = "", False
            if trust is not None and token:
                try:
                    ok, subject, _ = token_review(token, trust["audiences"])
                    allowed = ok and subject in trust["subjects"]
                except (OSError, ValueError, http.client.HTTPException) as e:
                    entry["review_error"] = type(e).__name__
            entry["subject"] = subject
            if not allowed:
                entry["status"], entry["fault"] = 403, "untrusted"
                STATE.record(entry)
                return self._send(*aws_error(
                    "query", 403, "AccessDenied",
                    "Not authorized to perform sts:AssumeRoleWithWebIdentity"))

        fault = STATE.take_fault(action, ids)
        if fault and fault["kind"] in ("throttle", "5xx"):
            if fault["kind"] == "throttle":
                code = "ThrottlingException" if protocol == "json" else "Throttling"
                status, message = 400, "Rate exceeded"
            else:
                code = "InternalServiceError" if protocol == "json" else "InternalFailure"
                status, message = 500, "injected server error"
            entry["status"], entry["fault"] = status, fault["kind"]
            STATE.record(entry)
            return self._send(*aws_error(protocol, status, code, message))

        if fault and fault["kind"] == "delay":
            time.sleep(fault["seconds"])
            entry["fault"] = "delay"
        status, headers, out = self._forward(STATE.upstreams[upstream], path, body)
        if protocol == "json" and status >= 400 and out.lstrip().startswith(b"<"):
            headers, out = json_error(status, out)
        if fault and fault["kind"] == "partial" and status == 200:
            out = partial(out)
            entry["fault"] = "partial"
        if fault and fault["kind"] == "expires" and status == 200:
            out = expiring(out, fault["seconds"])
            entry["fault"] = "expires"
        entry["status"] = status
        STATE.record(entry)
        self._send(status, headers, out)

    def _forward(self, upstream: str, path: str, body: bytes) -> tuple[int, dict, bytes]:
        u = urllib.parse.urlsplit(upstream)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("connection", "proxy-connection", "keep-alive",
                                            "transfer-encoding")}
            conn.request(self.command, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

    # ---------------------------------------------------------------------------------------
    # CONNECT (the proxy as HTTPS_PROXY): logged; tunnels only to loopback.

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        entry = {"action": "CONNECT", "ids": [self.path], "region": "", "service": "", "via": "",
                 "host": self.path}
        loopback = host in ("127.0.0.1", "localhost", "[::1]")
        if not loopback:
            entry["status"] = 403
            STATE.record(entry)
            return self._send(403, {"Content-Type": "text/plain"},
                              b"the test environment only tunnels to loopback\n")
        try:
            remote = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError):
            entry["status"] = 502
            STATE.record(entry)
            return self._send(502, {}, b"")
        entry["status"] = 200
        STATE.record(entry)
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.close_connection = True
        conns = [self.connection, remote]
        try:
            while True:
                readable, _, _ = select.select(conns, [], [], 60)
                if not readable:
                    break
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (remote if s is self.connection else self.connection).sendall(data)
        finally:
            remote.close()


def json_error(status: int, out: bytes) -> tuple[dict, bytes]:
    """moto answers IAM refusals of JSON-protocol calls in the query XML shape; AWS answers them
    in the JSON shape (`AccessDeniedException`), which is what the SDK parses."""
    code = re.search(rb"<Code>([^<]*)</Code>", out)
    message = re.search(rb"<Message>([^<]*)</Message>", out)
    name = code.group(1).decode() if code else "InternalFailure"
    if name == "AccessDenied":
        name = "AccessDeniedException"
    _, headers, body = aws_error("json", status, name, message.group(1).decode() if message else "")
    return headers, body


def expiring(out: bytes, seconds: float) -> bytes:
    """An STS answer whose credentials expire `seconds` from now."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
    return re.sub(rb"<Expiration>[^<]*</Expiration>", f"<Expiration>{at}</Expiration>".encode(), out)


def partial(out: bytes) -> bytes:
    """A BatchGetSecretValue answer with its last secret moved to Errors."""
    try:
        doc = json.loads(out)
    except ValueError:
        return out
    values = doc.get("SecretValues") or []
    if values:
        gone = values.pop()
        doc.setdefault("Errors", []).append({
            "SecretId": gone.get("Name") or gone.get("ARN"), "ErrorCode": "DecryptionFailure",
            "Message": "injected partial error"})
        doc["SecretValues"] = values
    return json.dumps(doc).encode()


def main() -> int:
    global STATE
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", action="append", required=True,
                   help="NAME=URL; the first is the default")
    p.add_argument("--kube-server", required=True)
    p.add_argument("--kube-ca", required=True)
    p.add_argument("--kube-token-file", required=True)
    p.add_argument("--tls-port", type=int)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    a = p.parse_args()
    upstreams: dict[str, str] = {}
    for i, u in enumerate(a.upstream):
        name, _, url = u.partition("=")
        upstreams[name] = url
        if i == 0:
            upstreams["default"] = url
    with open(a.kube_token_file) as f:
        token = f.read().strip()
    STATE = State(upstreams, a.kube_server, a.kube_ca, token)
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    if a.tls_port:
        tls = ThreadingHTTPServer(("127.0.0.1", a.tls_port), Handler)
        tls.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        threading.Thread(target=tls.serve_forever, daemon=True).start()
    print(f"awsproxy listening on 127.0.0.1:{a.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
