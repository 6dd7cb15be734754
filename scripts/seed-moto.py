#!/usr/bin/env python3
"""Seed a moto server (or any EC2 endpoint) with many owned AMIs for amiwarden benchmarks.

    python3 scripts/seed-moto.py --endpoint http://127.0.0.1:5000 --regions us-east-1,eu-west-1 --per-region 1000

Each region gets --per-region images named `app-fN-I` (N = I % --families), tagged
`family=fN`; odd ones also `share-with=prod`, and every --share-every-th one is shared
with 333333333333 (an account a sharing policy revokes). RegisterImage makes one
snapshot per image on moto. Tags go on in batches (one CreateTags call per family and
chunk), so 2,000 images take about 2,000 RegisterImage calls plus a few dozen more.
Credentials: AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing (any static key).
"""
import argparse
import os
import time

import boto3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--regions", default="us-east-1,eu-west-1")
    p.add_argument("--per-region", type=int, default=1000)
    p.add_argument("--families", type=int, default=10)
    p.add_argument("--prefix", default="app")
    p.add_argument("--share-every", type=int, default=10, help="0: share none")
    args = p.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    t0 = time.time()
    calls = 0
    for region in args.regions.split(","):
        ec2 = boto3.client("ec2", region_name=region, endpoint_url=args.endpoint)
        by_family = {}
        odd = []
        shared = []
        for i in range(args.per_region):
            fam = f"f{i % args.families}"
            image = ec2.register_image(Name=f"{args.prefix}-{fam}-{i}", RootDeviceName="/dev/xvda")["ImageId"]
            calls += 1
            by_family.setdefault(fam, []).append(image)
            if i % 2 == 1:
                odd.append(image)
            if args.share_every and i % args.share_every == 0:
                shared.append(image)
        for fam, ids in by_family.items():
            for k in range(0, len(ids), 200):
                ec2.create_tags(Resources=ids[k : k + 200], Tags=[{"Key": "family", "Value": fam}])
                calls += 1
        for k in range(0, len(odd), 200):
            ec2.create_tags(Resources=odd[k : k + 200], Tags=[{"Key": "share-with", "Value": "prod"}])
            calls += 1
        for image in shared:
            ec2.modify_image_attribute(
                ImageId=image, LaunchPermission={"Add": [{"UserId": "333333333333"}]}
            )
            calls += 1
        print(f"{region}: {args.per_region} images, {len(shared)} shared with 333333333333", flush=True)
    print(f"seeded in {time.time() - t0:.1f} s with {calls} calls", flush=True)


if __name__ == "__main__":
    main()
