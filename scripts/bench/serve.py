#!/usr/bin/env python3
"""Benchmarks of `amiwarden serve` (docs/serve.md), on loopback only.

    python3 scripts/bench/serve.py [--bin target/release/amiwarden] [--images 10000] [--events 400]

(1) One live event on an org of --images images over 6 (account, region) pairs
    (`amiwarden synth`: 2 accounts x 3 regions): API calls and wall time of
    `plan --event` against a scheduled `plan` of the same org.
(2) Events per second end to end: --events images, one "available" event each, sent to a
    moto SQS queue; 1, 2 and 4 workers (`serve --sim`) until the queue is empty; the
    latency from a message's send to its action's `applied` log line, median and p99.
(3) A sharded scheduled run: an org of 8 accounts, `enqueue-run` onto a FIFO queue,
    1, 2 and 4 workers, wall time against one `apply` of the whole org.

The backend is the embedded sim: one state file, which every worker locks while it
plans and applies, so workers on one sim queue behind each other; moto serves only the
queue. The figures say what dominates. Needs moto_server and boto3 (scripts/setup.sh).
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import boto3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(work):
    port = free_port()
    env = dict(os.environ, MOTO_EC2_LOAD_DEFAULT_AMIS="false")
    proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=open(os.path.join(work, "moto.log"), "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, url
        except OSError:
            time.sleep(0.2)
    raise SystemExit("moto did not start")


POLICY = """
[scope]
accounts = [{accounts}]
regions = ["us-east-1", "eu-west-1", "ap-southeast-2"]

[guardrails]
allowed_principals = ["222222222222"]
max_destructive = 1000000
max_destructive_percent = 100.0

[[plugin]]
name = "sharing"
source = "builtin:sharing"
grants = ["share", "unshare"]
[plugin.config]
share_tag = "share-with"
groups = {{ prod = ["222222222222"] }}
"""


def env():
    return dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/nonexistent",
                AWS_SHARED_CREDENTIALS_FILE="/nonexistent")


def run(cmd, **kw):
    t = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env(), **kw)
    if out.returncode not in (0,):
        sys.stderr.write(out.stderr[-2000:])
        raise SystemExit(f"{cmd[1]} exited {out.returncode}")
    return out, time.time() - t


def calls(stderr):
    line = [l for l in stderr.splitlines() if l.startswith("API calls:")]
    return line[-1][len("API calls: "):] if line else "-"


def one_event(bin, work, images):
    state = os.path.join(work, "org.json")
    run([bin, "synth", "--images", str(images), "--out", state])
    org = json.load(open(state))
    accounts = sorted(org["accounts"])
    policy = os.path.join(work, "one.toml")
    open(policy, "w").write(POLICY.format(accounts=", ".join(f'"{a}"' for a in accounts)))
    image = org["accounts"][accounts[0]]["regions"]["us-east-1"]["images"][0]["id"]
    event = {"version": "0", "id": "e", "detail-type": "EC2 AMI State Change", "source": "aws.ec2",
             "account": accounts[0], "time": "2026-11-24T00:00:00Z", "region": "us-east-1", "resources": [],
             "detail": {"RequestId": "r", "ImageId": image, "State": "available", "ErrorMessage": ""}}
    path = os.path.join(work, "event.json")
    json.dump(event, open(path, "w"))
    cache = ["--cache-dir", os.path.join(work, "cache")]
    base = [bin, "plan", "--policy", policy, "--sim", state, "--as-of", "2026-11-24", "--format", "json"] + cache
    run(base)  # warm the plugin cache
    rows = []
    for name, extra in [("scheduled run (whole org)", []), ("one live event", ["--event", path])]:
        times, c = [], "-"
        for _ in range(3):
            out, t = run(base + extra)
            times.append(t)
            c = calls(out.stderr)
        rows.append((name, statistics.median(times), c))
    print(f"\n### (1) Deciding one event on {images} images over 6 (account, region) pairs\n")
    print("| run | wall (median of 3) | API calls |")
    print("|---|---|---|")
    for name, t, c in rows:
        print(f"| {name} | {t:.2f} s | {c} |")


def sim_org(n, accounts):
    per = max(1, n // len(accounts))
    org = {"version": 1, "accounts": {}}
    k = 0
    for a in accounts:
        images = []
        for i in range(per):
            k += 1
            images.append({"id": f"ami-{k:017x}", "name": f"golden-{k}", "creation_time": "2026-11-01T00:00:00Z",
                           "tags": {"share-with": "prod"}})
        org["accounts"][a] = {"regions": {"us-east-1": {"images": images}}}
    return org


def queue_count(sqs, url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                 "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def workers(bin, work, n, queue, moto_url, policy, state, tag):
    procs = []
    for w in range(n):
        log = open(os.path.join(work, f"{tag}-w{w}.log"), "w")
        procs.append(subprocess.Popen(
            [bin, "--log-format", "json", "serve", "--policy", policy, "--sim", state, "--queue-url", queue,
             "--queue-endpoint-url", moto_url, "--queue-region", "us-east-1", "--state-dir", os.path.join(work, f"{tag}-state"),
             "--poll-wait", "1", "--visibility-timeout", "60", "--cache-dir", os.path.join(work, "cache")],
            env=dict(env(), AMIWARDEN_LOG="info"), stdout=subprocess.DEVNULL, stderr=log))
    return procs


def stop(procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=120)


def applied_times(work, tag):
    """image id -> time its action was applied, from the workers' JSON logs."""
    out = {}
    for f in os.listdir(work):
        if f.startswith(tag + "-w") and f.endswith(".log"):
            for line in open(os.path.join(work, f)):
                try:
                    v = json.loads(line)
                except ValueError:
                    continue
                fields = v.get("fields", {})
                if fields.get("message") == "applied" and fields.get("result") == "done":
                    ts = v["timestamp"].rstrip("Z")
                    secs = time.mktime(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
                    secs += float("0." + ts[20:]) if len(ts) > 20 else 0.0
                    out[fields.get("image")] = secs
    return out


def events_per_second(bin, work, moto_url, n_events):
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_url)
    print(f"\n### (2) Events end to end: {n_events} events, one share each (sim backend, moto SQS)\n")
    print("| workers | wall | events/s | latency median | latency p99 | client CPU per event |")
    print("|---|---|---|---|---|---|")
    for n in (1, 2, 4):
        tag = f"ev{n}"
        state = os.path.join(work, f"{tag}.json")
        json.dump(sim_org(n_events, ["111111111111"]), open(state, "w"))
        policy = os.path.join(work, f"{tag}.toml")
        open(policy, "w").write(POLICY.format(accounts='"111111111111"'))
        url = sqs.create_queue(QueueName=tag)["QueueUrl"]
        sent = {}
        for k in range(1, n_events + 1):
            image = f"ami-{k:017x}"
            body = json.dumps({"version": "0", "id": image, "detail-type": "EC2 AMI State Change",
                               "source": "aws.ec2", "account": "111111111111", "time": "2026-11-24T00:00:00Z",
                               "region": "us-east-1", "resources": [],
                               "detail": {"RequestId": "r", "ImageId": image, "State": "available"}})
            sent[image] = time.time()
            sqs.send_message(QueueUrl=url, MessageBody=body)
        cpu0 = os.times()
        t0 = time.time()
        procs = workers(bin, work, n, url, moto_url, policy, state, tag)
        while queue_count(sqs, url) > 0:
            time.sleep(0.2)
        wall = time.time() - t0
        stop(procs)
        cpu1 = os.times()
        cpu = (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system)
        done = applied_times(work, tag)
        lat = sorted(done[i] - sent[i] for i in done if i in sent)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
        print(f"| {n} | {wall:.1f} s | {n_events / wall:.1f} | {statistics.median(lat):.2f} s | {p99:.2f} s | "
              f"{cpu / n_events * 1000:.0f} ms |")


def sharded(bin, work, moto_url, images):
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_url)
    accounts = [f"{100000000000 + i * 111111111:012d}" for i in range(1, 9)]
    print(f"\n### (3) A scheduled run of 8 account shards, {images} images (sim backend, moto FIFO SQS)\n")
    print("| run | wall | ratio to one process |")
    print("|---|---|---|")
    policy = os.path.join(work, "shards.toml")
    open(policy, "w").write(POLICY.format(accounts=", ".join(f'"{a}"' for a in accounts)))
    state = os.path.join(work, "shards.json")
    json.dump(sim_org(images, accounts), open(state, "w"))
    cache = ["--cache-dir", os.path.join(work, "cache")]
    _, single = run([bin, "apply", "--policy", policy, "--sim", state, "--as-of", "2026-11-24", "--yes",
                     "--journal", os.path.join(work, "single.jsonl")] + cache)
    print(f"| one process, `apply` of the whole org | {single:.1f} s | 1.00 |")
    for n in (1, 2, 4):
        tag = f"sh{n}"
        st = os.path.join(work, f"{tag}.json")
        json.dump(sim_org(images, accounts), open(st, "w"))
        url = sqs.create_queue(QueueName=f"{tag}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        t0 = time.time()
        run([bin, "enqueue-run", "--policy", policy, "--queue-url", url, "--endpoint-url", moto_url, "--queue-region", "us-east-1",
             "--tick", f"2026-11-24T0{n}:00:00Z"])
        procs = workers(bin, work, n, url, moto_url, policy, st, tag)
        while queue_count(sqs, url) > 0:
            time.sleep(0.2)
        wall = time.time() - t0
        stop(procs)
        print(f"| {n} worker(s) | {wall:.1f} s | {wall / single:.2f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default="target/release/amiwarden")
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--events", type=int, default=400)
    p.add_argument("--shard-images", type=int, default=8000)
    a = p.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    work = tempfile.mkdtemp(prefix="amiwarden-serve-bench.")
    moto, url = start_moto(work)
    try:
        one_event(a.bin, work, a.images)
        events_per_second(a.bin, work, url, a.events)
        sharded(a.bin, work, url, a.shard_images)
    finally:
        moto.terminate()
        moto.wait()
    print(f"\n(work directory with every log: {work})")


if __name__ == "__main__":
    main()
