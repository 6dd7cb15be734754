#!/usr/bin/env python3
"""Helpers for scripts/bench/vs-custodian.sh (amiwarden beside Cloud Custodian on moto).

    vs_custodian.py amis     --images N --out amis.json --layout layout.json
    vs_custodian.py seed     --endpoint URL --layout layout.json --map map.json
    vs_custodian.py measure  --proxy URL --out results.jsonl --meta JSON --stdout F --stderr F -- CMD...
    vs_custodian.py dump     --endpoint URL --layout layout.json --map map.json --out state.json
    vs_custodian.py compare  --layout layout.json --scenario a|b|c --aw state.json --c7n state.json --out cmp.json
    vs_custodian.py report   --results results.jsonl --compare-glob 'DIR/compare-*.json'

The estate (one region, us-east-1, account 123456789012), image i of N:
  name bench-NNNNN, tags team=t(i%4) and bench=vs-custodian
  old (created 91..690 days ago)          when i % 5 in {0, 1, 2}   (60%), else 1..85 days old
  used by a running instance              when i % 10 == 0          (10%, all of them old)
  in a launch template (no ASG)           when i % 25 == 1 and i < 375  (at most 15, all of them old: see below)
  public (launch permission Group=all)    when i % 8 == 3           (12.5%)
  shared with 222222222222 (legitimate)   when i % 6 == 1           (16.7%; public and shared when i % 24 == 19)

moto sets an image's creation date to "now" on RegisterImage and has no API to change
it, so the images are loaded at start-up from MOTO_AMIS_PATH (a JSON list moto reads into
every region's backend when the backend is created; the ids are ours, so both emulators
hold the same ids). Everything else (shares, instances, launch templates) is made through
the EC2 API by `seed`. Only us-east-1 is used: every region would get the same images.

At most 15 launch templates: moto 5.2's DescribeLaunchTemplates returns the first
MaxResults (default 15) templates and no NextToken, so a client that pages correctly
still sees only 15. With more, amiwarden would miss the others on moto (not on EC2).
"""
import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

ACCOUNT = "123456789012"
LEGIT = "222222222222"
REGION = "us-east-1"


# ----------------------------------------------------------------------------- estate

def layout_of(i, now):
    old = i % 5 in (0, 1, 2)
    age = 91 + (i * 37) % 600 if old else 1 + (i * 13) % 85
    return {
        "index": i,
        "name": f"bench-{i:05d}",
        "ami_id": f"ami-0be{i:014x}",
        "age_days": age,
        "created": (now - timedelta(days=age)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "old": old,
        "instance": i % 10 == 0,
        "launch_template": i % 25 == 1 and i < 375,
        "public": i % 8 == 3,
        "shared": i % 6 == 1,
        "tags": {"team": f"t{i % 4}", "bench": "vs-custodian"},
    }


def cmd_amis(a):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    layout = [layout_of(i, now) for i in range(a.images)]
    amis = [
        {
            "ami_id": e["ami_id"], "name": e["name"], "description": f"vs-custodian bench image {e['index']}",
            "owner_id": ACCOUNT, "public": e["public"], "state": "available", "creation_date": e["created"],
            "architecture": "x86_64", "virtualization_type": "hvm", "hypervisor": "xen", "image_type": "machine",
            "root_device_type": "ebs", "root_device_name": "/dev/xvda", "tags": e["tags"],
        }
        for e in layout
    ]
    json.dump(amis, open(a.out, "w"))
    json.dump({"generated": now.isoformat(), "images": layout}, open(a.layout, "w"))
    c = Counter()
    for e in layout:
        c["old"] += e["old"]
        c["instance"] += e["instance"]
        c["launch_template"] += e["launch_template"]
        c["public"] += e["public"]
        c["shared"] += e["shared"]
        c["public_and_shared"] += e["public"] and e["shared"]
        c["old_unused_no_lt"] += e["old"] and not e["instance"] and not e["launch_template"]
    print(f"estate: {a.images} images, " + ", ".join(f"{k} {v}" for k, v in c.items()), file=sys.stderr)


def ec2_client(endpoint):
    import boto3

    return boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)


def cmd_seed(a):
    t0 = time.monotonic()
    ec2 = ec2_client(a.endpoint)
    layout = json.load(open(a.layout))["images"]
    calls = 0
    for e in layout:
        if e["shared"]:
            ec2.modify_image_attribute(ImageId=e["ami_id"], LaunchPermission={"Add": [{"UserId": LEGIT}]})
            calls += 1
        if e["instance"]:
            ec2.run_instances(ImageId=e["ami_id"], MinCount=1, MaxCount=1, InstanceType="t3.micro")
            calls += 1
        if e["launch_template"]:
            ec2.create_launch_template(
                LaunchTemplateName=f"lt-{e['name']}",
                LaunchTemplateData={"ImageId": e["ami_id"], "InstanceType": "t3.micro"},
            )
            calls += 1
    images = ec2.describe_images(Owners=["self"])["Images"]
    mapping = {
        i["Name"]: {"ami_id": i["ImageId"], "snapshots": [b["Ebs"]["SnapshotId"] for b in i.get("BlockDeviceMappings", []) if "Ebs" in b]}
        for i in images
    }
    if len(mapping) != len(layout):
        sys.exit(f"seed: the emulator holds {len(mapping)} images, expected {len(layout)}")
    json.dump(mapping, open(a.map, "w"))
    print(f"seeded {a.endpoint}: {len(layout)} images, {calls} calls, {time.monotonic() - t0:.1f} s", file=sys.stderr)


def cmd_dump(a):
    ec2 = ec2_client(a.endpoint)
    layout = json.load(open(a.layout))["images"]
    mapping = json.load(open(a.map))
    present = {i["Name"]: i for i in ec2.describe_images(Owners=["self"])["Images"]}
    snaps = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    state = {}
    for e in layout:
        name = e["name"]
        image = present.get(name)
        perms = None
        if image:
            lp = ec2.describe_image_attribute(ImageId=image["ImageId"], Attribute="launchPermission")["LaunchPermissions"]
            perms = sorted("public" if p.get("Group") == "all" else
                           p.get("UserId") or p.get("OrganizationArn") or p.get("OrganizationalUnitArn") for p in lp)
        state[name] = {
            "present": image is not None,
            "perms": perms,
            "snapshots": sum(1 for s in mapping[name]["snapshots"] if s in snaps),
        }
    json.dump(state, open(a.out, "w"), indent=0, sort_keys=True)


# ----------------------------------------------------------------------------- end states

def intent(e, scenario):
    """The end state the policy asks for (amiwarden's reading of 'unused': no instance and no launch template)."""
    perms = sorted((["public"] if e["public"] else []) + ([LEGIT] if e["shared"] else []))
    if scenario in ("a", "c") and e["old"] and not e["instance"] and not e["launch_template"]:
        return {"present": False, "perms": None, "snapshots": 0}
    if scenario in ("b", "c"):
        perms = [p for p in perms if p != "public"]
    return {"present": True, "perms": perms, "snapshots": 1}


def category(e):
    bits = []
    bits.append("old" if e["old"] else "young")
    if e["instance"]:
        bits.append("instance")
    if e["launch_template"]:
        bits.append("launch-template")
    if e["public"]:
        bits.append("public")
    if e["shared"]:
        bits.append("shared")
    return "+".join(bits)


def describe_state(s):
    if not s["present"]:
        return f"deregistered, {s['snapshots']} snapshot left"
    return f"present, perms [{', '.join(s['perms'])}], {s['snapshots']} snapshot"


def cmd_compare(a):
    layout = json.load(open(a.layout))["images"]
    aw = json.load(open(a.aw))
    c7n = json.load(open(a.c7n))
    out = {"images": len(layout), "scenario": a.scenario, "agree": 0, "aw_intent": 0, "c7n_intent": 0, "differences": []}
    groups = defaultdict(list)
    for e in layout:
        name = e["name"]
        want = intent(e, a.scenario)
        out["aw_intent"] += aw[name] == want
        out["c7n_intent"] += c7n[name] == want
        if aw[name] == c7n[name]:
            out["agree"] += 1
        else:
            key = (category(e), describe_state(want), describe_state(aw[name]), describe_state(c7n[name]))
            groups[key].append(name)
    for (cat, want, s_aw, s_c7n), names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        out["differences"].append({"images": len(names), "category": cat, "intent": want, "amiwarden": s_aw,
                                   "custodian": s_c7n, "example": names[0]})
    json.dump(out, open(a.out, "w"), indent=1)
    print(f"end state, scenario {a.scenario}: tools agree on {out['agree']}/{len(layout)} images; "
          f"policy intent met: amiwarden {out['aw_intent']}, custodian {out['c7n_intent']}", file=sys.stderr)
    for d in out["differences"]:
        print(f"  {d['images']:5d} {d['category']}: amiwarden {d['amiwarden']}; custodian {d['custodian']}", file=sys.stderr)


# ----------------------------------------------------------------------------- measuring

def http(url, method="GET"):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def selection(kind, artifact):
    """What a run selected: image names per intended change, from amiwarden's plan JSON or custodian's output dir."""
    sel = {"deregister": [], "delete_snapshot": 0, "unshare_public": [], "unshare_other": 0}
    try:
        if kind == "amiwarden":
            plan = json.load(open(artifact))
            for act in plan["actions"]:
                if act["op"] == "deregister":
                    sel["deregister"].append(act["image_name"])
                elif act["op"] == "delete_snapshot":
                    sel["delete_snapshot"] += 1
                elif act["op"] == "unshare":
                    if act.get("principal") == "public":
                        sel["unshare_public"].append(act["image_name"])
                    else:
                        sel["unshare_other"] += 1
            sel["refused"] = len(plan.get("refused", []))
            sel["plugin_errors"] = len(plan.get("errors", []))
        else:
            for policy, key in (("ami-old-unused", "deregister"), ("ami-public", "unshare_public")):
                path = os.path.join(artifact, policy, "resources.json")
                if os.path.exists(path):
                    sel[key] = [r.get("Name") for r in json.load(open(path))]
            sel["delete_snapshot"] = len(sel["deregister"])
    except (OSError, ValueError, KeyError) as e:
        sel["error"] = str(e)
    sel["deregister"] = sorted(sel["deregister"])
    sel["unshare_public"] = sorted(sel["unshare_public"])
    return sel


def cmd_measure(a):
    meta = json.loads(a.meta)
    http(a.proxy + "/__bench/reset", "POST")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with open(a.stdout, "wb") as so, open(a.stderr, "wb") as se:
        rc = subprocess.call(a.cmd, stdout=so, stderr=se)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    counts = http(a.proxy + "/__bench/counts")
    detail = http(a.proxy + "/__bench/detail")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row = dict(meta, wall=round(wall, 3), cpu=round(cpu, 3), user=round(after.ru_utime - before.ru_utime, 3),
               sys=round(after.ru_stime - before.ru_stime, 3), maxrss_kib=after.ru_maxrss, rc=rc, counts=counts, detail=detail,
               stdout=a.stdout, stderr=a.stderr)
    if a.select:
        row["selection"] = selection(meta["tool"], a.select)
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    total = sum(v["calls"] for v in counts.values())
    errors = sum(v["errors"] for v in counts.values())
    print(f"  {meta['tool']:9s} {meta['mode']:7s} run {meta['run']}: wall {wall:7.1f} s, cpu {cpu:6.1f} s, "
          f"{total} calls ({errors} errors), exit {rc}", file=sys.stderr)


# ----------------------------------------------------------------------------- report

# EC2's token buckets (FACTS.md): (size, refill per second). Describe* 100/20, mutating default 50/5.
BUCKETS = {"DeregisterImage": (100, 5), "DeleteSnapshot": (100, 5), "ModifyImageAttribute": (100, 5),
           "CopyImage": (100, 1), "CreateTags": (100, 10), "DeleteTags": (100, 10)}


def ec2_floor(counts):
    """The least time EC2's buckets allow for these calls (max over buckets; all start full)."""
    per = defaultdict(int)
    for key, v in counts.items():
        service, op = key.split(":", 1)
        if service != "ec2":
            continue
        if op in BUCKETS:
            per[op] += v["calls"]
        elif op.startswith(("Describe", "Get", "List")):
            per["Describe*"] += v["calls"]
        else:
            per["mutating"] += v["calls"]
    floor = 0.0
    for b, n in per.items():
        cap, rate = BUCKETS.get(b, (100, 20) if b == "Describe*" else (50, 5))
        floor = max(floor, max(0, n - cap) / rate)
    return floor


def fmt_counts(counts):
    short = {"ec2": "", "sts": "sts:", "autoscaling": "asg:"}
    parts = []
    for key, v in sorted(counts.items(), key=lambda kv: (-kv[1]["calls"], kv[0])):
        service, op = key.split(":", 1)
        label = short.get(service, service + ":") + op
        parts.append(f"{label} {v['calls']}" + (f" ({v['errors']} err)" if v["errors"] else ""))
    return ", ".join(parts)


def cmd_report(a):
    rows = [json.loads(line) for line in open(a.results)]
    compares = {}
    for path in glob.glob(a.compare_glob):
        c = json.load(open(path))
        compares[(c["images"], c["scenario"])] = c
    groups = defaultdict(list)
    for r in rows:
        groups[(r["images"], r["scenario"], r["tool"], r["mode"])].append(r)
    titles = {"a": "(a) deregister AMIs older than 90 days that nothing uses, with their snapshots",
              "b": "(b) remove public launch permissions",
              "c": "(c) both"}
    out = []
    for images, scenario in sorted({(k[0], k[1]) for k in groups}):
        out.append(f"\n### {images} images, scenario {titles[scenario]}\n")
        out.append("| tool | mode | runs | wall (median) | client CPU (median) | API calls (median run) | by operation (median run) | EC2 floor | exit | end state |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        cmp_ = compares.get((images, scenario))
        dry = {}
        for tool in ("amiwarden", "custodian"):
            for mode in ("dry-run", "apply"):
                rs = groups.get((images, scenario, tool, mode))
                if not rs:
                    continue
                wall = statistics.median(r["wall"] for r in rs)
                cpu = statistics.median(r["cpu"] for r in rs)
                totals = [sum(v["calls"] for v in r["counts"].values()) for r in rs]
                med = sorted(rs, key=lambda r: sum(v["calls"] for v in r["counts"].values()))[len(rs) // 2]
                total = statistics.median(totals)
                spread = "" if min(totals) == max(totals) else f" ({min(totals)}–{max(totals)})"
                rcs = ",".join(sorted({str(r["rc"]) for r in rs}))
                if mode == "dry-run":
                    sel = med.get("selection", {})
                    dry[tool] = sel
                    end = (f"would deregister {len(sel.get('deregister', []))}, "
                           f"make private {len(sel.get('unshare_public', []))}")
                    if sel.get("unshare_other"):
                        end += f", unshare others {sel['unshare_other']}"
                elif cmp_:
                    ok = cmp_["aw_intent"] if tool == "amiwarden" else cmp_["c7n_intent"]
                    end = f"intent met on {ok}/{cmp_['images']}; tools agree on {cmp_['agree']}/{cmp_['images']}"
                else:
                    end = "not compared"
                out.append(f"| {tool} | {mode} | {len(rs)} | {wall:.1f} s | {cpu:.1f} s | {total:g}{spread} | "
                           f"{fmt_counts(med['counts'])} | {ec2_floor(med['counts']):.0f} s | {rcs} | {end} |")
        shapes = []
        for tool in ("amiwarden", "custodian"):
            for mode in ("dry-run", "apply"):
                rs = groups.get((images, scenario, tool, mode))
                if rs and rs[-1].get("detail"):
                    d = rs[-1]["detail"]
                    shapes.append(f"- {tool} {mode} (run {rs[-1]['run']}): " + "; ".join(
                        f"`{k.replace('ec2:', '')}` {v['calls']}" + (f" ({v['errors']} err)" if v["errors"] else "")
                        + f" [{v['upstream_s']:.1f} s in moto]"
                        for k, v in sorted(d.items(), key=lambda kv: -kv[1]["calls"])))
        if shapes:
            out.append("\nCalls by request shape, with the time the emulator spent answering them:\n")
            out.extend(shapes)
        if "amiwarden" in dry and "custodian" in dry:
            for key, label in (("deregister", "deregister"), ("unshare_public", "make private")):
                x, y = set(dry["amiwarden"].get(key, [])), set(dry["custodian"].get(key, []))
                if x or y:
                    out.append(f"\nDry runs, *{label}*: amiwarden {len(x)}, custodian {len(y)}, both {len(x & y)}, "
                               f"only amiwarden {len(x - y)}, only custodian {len(y - x)}.")
        if cmp_ and cmp_["differences"]:
            out.append("\nEnd states after apply that differ (by image category):\n")
            out.append("| images | category | policy intent | amiwarden | custodian |")
            out.append("|---|---|---|---|---|")
            for d in cmp_["differences"]:
                out.append(f"| {d['images']} | {d['category']} | {d['intent']} | {d['amiwarden']} | {d['custodian']} |")
        elif cmp_:
            out.append("\nEnd states after apply: identical on every image.")
    text = "\n".join(out) + "\n"
    print(text)
    if a.out:
        open(a.out, "w").write(text)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="sub", required=True)
    s = sub.add_parser("amis")
    s.add_argument("--images", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--layout", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--layout", required=True)
    s.add_argument("--map", required=True)
    s = sub.add_parser("dump")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--layout", required=True)
    s.add_argument("--map", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("compare")
    s.add_argument("--layout", required=True)
    s.add_argument("--scenario", required=True)
    s.add_argument("--aw", required=True)
    s.add_argument("--c7n", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("measure")
    s.add_argument("--proxy", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--meta", required=True)
    s.add_argument("--stdout", required=True)
    s.add_argument("--stderr", required=True)
    s.add_argument("--select", help="amiwarden plan JSON or custodian output dir to read the selection from")
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    s = sub.add_parser("report")
    s.add_argument("--results", required=True)
    s.add_argument("--compare-glob", required=True)
    s.add_argument("--out")
    a = p.parse_args()
    if a.sub == "measure" and a.cmd and a.cmd[0] == "--":
        a.cmd = a.cmd[1:]
    {"amis": cmd_amis, "seed": cmd_seed, "dump": cmd_dump, "compare": cmd_compare, "measure": cmd_measure,
     "report": cmd_report}[a.sub](a)


if __name__ == "__main__":
    main()
