#!/usr/bin/env python3
"""A counting HTTP reverse proxy for an AWS emulator (moto), stdlib only.

    python3 scripts/bench/count_proxy.py --listen PORT --upstream PORT

Listens on 127.0.0.1:LISTEN and forwards every request unchanged to
127.0.0.1:UPSTREAM, counting requests per `service:Action` at the emulator side:

- the service is read from the SigV4 credential scope of the Authorization header
  (`Credential=AKID/DATE/REGION/SERVICE/aws4_request`);
- the action from `Action=` of a query-protocol request (form body or query string:
  EC2, STS, Auto Scaling, ...) or from the `X-Amz-Target` header (JSON protocol).

A request answered with HTTP >= 400 is also counted under `errors`, and the time the
emulator took to answer is summed under `upstream_s`. Requests are also counted by
shape (`detail`): the action with its parameter names, numbered members collapsed
(`ImageId.N x20`), and filter names, e.g.
`ec2:DescribeImages Filter:block-device-mapping.snapshot-id Owner.N`.

Control endpoints (answered by the proxy, never forwarded):
  GET  /__bench/counts  -> {"service:Action": {"calls": n, "errors": m, "upstream_s": t}, ...}
  GET  /__bench/detail  -> {"service:Action SHAPE": {"calls": n, "errors": m, "upstream_s": t}, ...}
  POST /__bench/reset   -> zeroes the counters

One emulation: moto 5.2 does not implement EC2 ResetImageAttribute (it answers
HTTP 500). Cloud Custodian's `set-permissions` calls it (see docs/bench-custodian.md),
so the proxy answers `ResetImageAttribute Attribute=launchPermission` itself with
AWS's documented semantics: the image's launch permissions are reset to the default
(private: every Group=all, UserId, OrganizationArn and OrganizationalUnitArn grant is
removed). It does so with one DescribeImageAttribute and one ModifyImageAttribute sent
straight to the emulator; those two internal calls are not counted (the client made
one call, ResetImageAttribute, and that is what is counted). Pass --no-emulate-reset
to forward it to moto unchanged.
"""
import argparse
import http.client
import json
import re
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailers", "transfer-encoding", "upgrade",
}
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.tables = {"counts": {}, "detail": {}}

    def add(self, key, shape, status, seconds):
        with self.lock:
            for table, k in (("counts", key), ("detail", f"{key} {shape}".rstrip())):
                row = self.tables[table].setdefault(k, {"calls": 0, "errors": 0, "upstream_s": 0.0})
                row["calls"] += 1
                row["errors"] += status >= 400
                row["upstream_s"] += seconds

    def snapshot(self, table="counts"):
        with self.lock:
            return {k: dict(v, upstream_s=round(v["upstream_s"], 3)) for k, v in sorted(self.tables[table].items())}

    def reset(self):
        with self.lock:
            for t in self.tables.values():
                t.clear()


def shape_of(params):
    """Parameter names with numbered members collapsed, and filter names spelled out."""
    collapsed = defaultdict(int)
    filters = []
    for name, values in params.items():
        if name in ("Action", "Version"):
            continue
        if re.fullmatch(r"Filter\.\d+\.Name", name):
            filters.append("Filter:" + values[0])
            continue
        if name.startswith("Filter."):
            continue
        collapsed[re.sub(r"\.\d+", ".N", name)] += 1
    parts = sorted(filters) + [k if n == 1 else f"{k} x{n}" for k, n in sorted(collapsed.items())]
    return " ".join(parts)


COUNTERS = Counters()
ARGS = None


def upstream(method, path, body, headers):
    conn = http.client.HTTPConnection("127.0.0.1", ARGS.upstream, timeout=600)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.reason, resp.getheaders(), resp.read()
    finally:
        conn.close()


def strip_ns(tag):
    return tag.rsplit("}", 1)[-1]


def emulate_reset(params, headers):
    """ResetImageAttribute launchPermission on moto: read the grants, remove them all."""
    image = params.get("ImageId", [""])[0]
    version = params.get("Version", ["2016-11-15"])[0]
    fwd = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    for h in ("Authorization", "X-Amz-Date", "Host"):
        if headers.get(h):
            fwd[h] = headers[h]
    q = urllib.parse.urlencode(
        {"Action": "DescribeImageAttribute", "Version": version, "ImageId": image, "Attribute": "launchPermission"}
    )
    status, reason, hdrs, data = upstream("POST", "/", q.encode(), fwd)
    if status >= 400:
        return status, reason, hdrs, data
    remove = []
    root = ET.fromstring(data)
    for el in root.iter():
        if strip_ns(el.tag) != "launchPermission":
            continue
        for item in el:
            if strip_ns(item.tag) != "item":
                continue
            grant = {strip_ns(c.tag): (c.text or "") for c in item}
            for key, field in (("group", "Group"), ("userId", "UserId"), ("organizationArn", "OrganizationArn"),
                               ("organizationalUnitArn", "OrganizationalUnitArn")):
                if grant.get(key):
                    remove.append((field, grant[key]))
    if remove:
        form = {"Action": "ModifyImageAttribute", "Version": version, "ImageId": image}
        for n, (field, value) in enumerate(remove, 1):
            form[f"LaunchPermission.Remove.{n}.{field}"] = value
        status, reason, hdrs, data = upstream("POST", "/", urllib.parse.urlencode(form).encode(), fwd)
        if status >= 400:
            return status, reason, hdrs, data
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ResetImageAttributeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        "<requestId>count-proxy-reset</requestId><return>true</return></ResetImageAttributeResponse>"
    ).encode()
    return 200, "OK", [("Content-Type", "text/xml")], body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def send_json(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/__bench/"):
            if self.path.startswith("/__bench/reset"):
                COUNTERS.reset()
                return self.send_json({"reset": True})
            return self.send_json(COUNTERS.snapshot("detail" if self.path.startswith("/__bench/detail") else "counts"))

        auth = self.headers.get("Authorization", "")
        m = SCOPE.search(auth)
        service = m.group(2) if m else "?"
        params = {}
        ctype = self.headers.get("Content-Type", "")
        if "x-www-form-urlencoded" in ctype and body:
            params = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        query = urllib.parse.urlsplit(self.path).query
        if query:
            for k, v in urllib.parse.parse_qs(query).items():
                params.setdefault(k, v)
        action = params.get("Action", [None])[0]
        if action is None:
            target = self.headers.get("X-Amz-Target")
            action = target.rsplit(".", 1)[-1] if target else f"{self.command} {urllib.parse.urlsplit(self.path).path}"
        key = f"{service}:{action}"

        t0 = time.monotonic()
        if (ARGS.emulate_reset and service == "ec2" and action == "ResetImageAttribute"
                and params.get("Attribute", [""])[0] == "launchPermission"):
            status, reason, headers, data = emulate_reset(params, self.headers)
        else:
            fwd = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            try:
                status, reason, headers, data = upstream(self.command, self.path, body, fwd)
            except OSError as e:
                status, reason, headers, data = 502, "Bad Gateway", [], f"upstream: {e}".encode()
        COUNTERS.add(key, shape_of(params), status, time.monotonic() - t0)
        self.send_response(status, reason)
        for k, v in headers:
            if k.lower() in HOP_BY_HOP or k.lower() in ("content-length", "server", "date"):
                continue
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--upstream", type=int, required=True)
    p.add_argument("--no-emulate-reset", dest="emulate_reset", action="store_false")
    ARGS = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.listen), Handler)
    server.daemon_threads = True
    print(f"count-proxy 127.0.0.1:{ARGS.listen} -> 127.0.0.1:{ARGS.upstream}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
