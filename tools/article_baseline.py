#!/usr/bin/env python3
"""The baseline of docs/benchmarks.md: the approach of the original article.

boto3, accounts one after another; in each, ListUsers and then ListAccessKeys
for every user, comparing each key's age with the limit. Run against the
benchmark's synthetic endpoint by `keywarden-bench article`. Prints one JSON
object: {"accounts", "overdue_keys", "failed_accounts", "wall_s"}.
"""

import argparse
import json
import sys
import time
from datetime import datetime, timezone

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--now", required=True)
    ap.add_argument("--max-age-days", type=int, default=90)
    args = ap.parse_args()
    now = datetime.fromisoformat(args.now.replace("Z", "+00:00"))
    cfg = Config(retries={"mode": "standard", "max_attempts": 10})
    common = dict(endpoint_url=args.endpoint, region_name="us-east-1", config=cfg)
    creds = dict(aws_access_key_id="AKIABENCHMANAGEMENT0", aws_secret_access_key="bench")
    started = time.monotonic()
    orgs = boto3.client("organizations", **common, **creds)
    sts = boto3.client("sts", **common, **creds)
    management = sts.get_caller_identity()["Account"]
    accounts = [a for page in orgs.get_paginator("list_accounts").paginate() for a in page["Accounts"]]
    overdue = failed = 0
    for account in accounts:
        try:
            if account["Id"] == management:
                iam = boto3.client("iam", **common, **creds)
            else:
                c = sts.assume_role(RoleArn=f"arn:aws:iam::{account['Id']}:role/KeywardenScanRole",
                                    RoleSessionName="article")["Credentials"]
                iam = boto3.client("iam", **common, aws_access_key_id=c["AccessKeyId"],
                                   aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
            for page in iam.get_paginator("list_users").paginate():
                for user in page["Users"]:
                    for key in iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]:
                        if key["Status"] == "Active" and (now - key["CreateDate"]).days >= args.max_age_days:
                            overdue += 1
        except ClientError:
            failed += 1
    json.dump({"accounts": len(accounts), "overdue_keys": overdue, "failed_accounts": failed,
               "wall_s": time.monotonic() - started}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
