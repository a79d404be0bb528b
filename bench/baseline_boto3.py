"""The boto3 baseline of measure 2 (issue 9: "faster than boto3 paginators in 16 threads").

What a Python user writes by hand: the ListUsers paginator, then each user's
ListAccessKeys paginator on a pool of N threads (one client: boto3 clients are
thread-safe), every key written as a CSV row, sorted like ours. No checkpoint, no
resume, no exactness under change: the floor of what a script does.

Usage: python3 bench/baseline_boto3.py --endpoint-url URL --out FILE [--threads 16]
Prints one JSON line: {"rows": N, "calls": N, "wallMs": N} (wall from the first
call to the file written, like the other baseline; the bench also times the process).
"""

import argparse
import concurrent.futures
import csv
import json
import os
import time

import boto3
from botocore.config import Config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()

    # As many pooled connections as threads, and the adaptive retries ours uses.
    config = Config(max_pool_connections=args.threads, retries={"mode": "adaptive", "max_attempts": 10})
    # IAM is global; botocore reads AWS_DEFAULT_REGION, not the AWS_REGION the SDK for JavaScript reads.
    iam = boto3.client("iam", endpoint_url=args.endpoint_url, region_name=os.environ.get("AWS_REGION", "us-east-1"), config=config)
    started = time.monotonic()
    calls = 0

    users = []
    for page in iam.get_paginator("list_users").paginate():
        calls += 1
        users.extend(page["Users"])

    def keys_of(user):
        pages = list(iam.get_paginator("list_access_keys").paginate(UserName=user["UserName"]))
        return len(pages), [(user, key) for page in pages for key in page["AccessKeyMetadata"]]

    rows = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.threads) as pool:
        for n, found in pool.map(keys_of, users):
            calls += n
            rows.extend(found)

    rows.sort(key=lambda r: (r[0]["UserName"], r[1]["AccessKeyId"]))
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_name", "user_id", "access_key_id", "status", "create_date"])
        for user, key in rows:
            w.writerow([user["UserName"], user["UserId"], key["AccessKeyId"], key["Status"], key["CreateDate"].isoformat()])
    print(json.dumps({"rows": len(rows), "calls": calls, "wallMs": (time.monotonic() - started) * 1000}))


if __name__ == "__main__":
    main()
