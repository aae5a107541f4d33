#!/usr/bin/env python3
"""Seeds an emulated AWS Organization into a running tools/moto_server.py.

Reads a JSON spec on stdin (see tests/fixtures/*.json and demo/org.json),
creates it through boto3, backdates keys relative to --now, and prints a JSON
object with what was created:

  {"management_account_id": "...", "accounts": {"<name>": "<id>"},
   "keys": {"<account name>/<user>/<index>": "AKIA..."},
   "scanner": {"access_key_id": "...", "secret_access_key": "..."}}

Spec (every field optional unless marked):
  {"accounts": [{"name"*, "email"*, "management": bool, "ou": "A/B", "alias",
                 "tags": {k: v}, "scan_role": "ok" | "no-iam" | "stackset" | "none",
                 "drop_actions": ["iam:..."],   # with "stackset": removed from the template's policy
                 "stackset_parameters": {"EnableEnforcement": "true"},  # with "stackset": more template parameters
                 "root_key": {"age_days", "last_used_days", "active"},
                 "securityhub": bool,          # Security Hub enabled in the account (us-east-1 unless
                 "securityhub_region": "...",  # this region is given)
                 "groups": [{"name"*, "policies": ["<managed policy ARN>"]}],   # IAM groups, before the users
                 "users": [{"name"*, "tags": {k: v}, "path", "groups": ["<group>"],
                            "policies": ["<managed policy ARN>"],   # attached to the user
                            "inline": {"<name>": <policy document>},  # inline policies
                            "password": bool,          # a console password (login profile)
                            "keys": [{"age_days"*, "last_used_days", "service", "region", "status",
                                      # CloudTrail events of the key (LookupEvents answers them):
                                      "events": [{"days_ago"*, "ip"*, "ua"*, "api"*: "s3:ListBuckets",
                                                  "vpce", "region", "count"}]}]}]}],
   "ses_identities": ["sender@example.com" | "example.com"],   # verified in SES (us-east-1)
   "buckets": ["name" | {"name", "versioning": bool, "encryption": "AES256" | "aws:kms"}],
                             # S3 buckets in the management account (for `state`)
   "trusted_services": ["member.org.stacksets.cloudformation.amazonaws.com"],  # Organizations trusted access
   "parameters": [{"name", "type", "value"}],  # SSM parameters in the management account (us-east-1)
   "scanner_user": bool,     # a least-privilege scanner identity in the management account
   "scanner_actions": [...], # its allowed actions (default: the list below)
   "deny_assume_role_in": ["<account name>", ...],  # an explicit Deny on AssumeRole into those accounts' scan role
   "stackset_template": "path",  # for "scan_role": "stackset" (default stacksets/member-role.yaml)
   "enforce_auth": bool,     # turn on moto's IAM policy enforcement at the end
   "role_name": "KeywardenScanRole"}
"""

import argparse
import json
import os
import re
import sys
import urllib.request
from datetime import datetime, timedelta, timezone

import boto3

MANAGEMENT_ACCOUNT = "123456789012"  # moto's default account: the caller's own
SCANNER_ORG_ACTIONS = [
    "organizations:DescribeOrganization",
    "organizations:ListAccounts",
    "organizations:ListAccountsForParent",
    "organizations:ListChildren",
    "organizations:ListTagsForResource",
    "organizations:ListAWSServiceAccessForOrganization",
    "sts:AssumeRole",
    "sts:GetCallerIdentity",
    "ses:GetAccount",
    "ses:GetEmailIdentity",
    "ses:SendEmail",
    "ses:SendRawEmail",
]
IAM_ACTIONS = [
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:GetAccessKeyLastUsed",
    "iam:GetAccountSummary",
    "iam:ListAccessKeys",
    "iam:ListAccountAliases",
    "iam:ListUserTags",
    "iam:ListUsers",
    "iam:ListPolicies",
    "iam:ListEntitiesForPolicy",
    "iam:GetGroup",
    "iam:GetUser",
    "iam:ListAttachedUserPolicies",
    "iam:ListUserPolicies",
    "iam:GetUserPolicy",
    "iam:ListGroupsForUser",
    "iam:ListAttachedGroupPolicies",
    "iam:ListGroupPolicies",
    "iam:GetGroupPolicy",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
    "cloudtrail:LookupEvents",
]


def hook(endpoint, path, body):
    req = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}")


def client(service, endpoint, creds=None):
    kwargs = dict(endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
    if creds:
        kwargs.update(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                      aws_session_token=creds["SessionToken"])
    return boto3.client(service, **kwargs)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def deploy_member_role(ep, creds, spec, acct, role_name, org_id):
    """Deploys the StackSet's member-role template with CloudFormation, as the StackSet would."""
    import yaml

    path = spec.get("stackset_template") or os.path.join(os.path.dirname(__file__), "..", "stacksets", "member-role.yaml")
    with open(path) as f:
        template = yaml.safe_load(f)
    drop = set(acct.get("drop_actions", []))
    if drop:
        for policy in template["Resources"]["ScanRole"]["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                statement["Action"] = [a for a in statement["Action"] if a not in drop]
    cfn = client("cloudformation", ep, creds)
    cfn.create_stack(
        StackName="StackSet-keywarden-member-role",
        TemplateBody=json.dumps(template),
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[
            {"ParameterKey": "ScannerRoleArn",
             "ParameterValue": f"arn:aws:iam::{MANAGEMENT_ACCOUNT}:user/keywarden-scanner"},
            {"ParameterKey": "OrganizationId", "ParameterValue": org_id},
            {"ParameterKey": "RoleName", "ParameterValue": role_name},
        ] + [{"ParameterKey": k, "ParameterValue": v} for k, v in acct.get("stackset_parameters", {}).items()],
    )
    status = cfn.describe_stacks(StackName="StackSet-keywarden-member-role")["Stacks"][0]["StackStatus"]
    if status != "CREATE_COMPLETE":
        raise RuntimeError(f"member-role stack in {acct['name']}: {status}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--now", required=True, help="RFC 3339 instant the ages are relative to")
    args = ap.parse_args()
    spec = json.load(sys.stdin)
    now = datetime.fromisoformat(args.now.replace("Z", "+00:00")).astimezone(timezone.utc)
    ep = args.endpoint.rstrip("/")
    role_name = spec.get("role_name", "KeywardenScanRole")

    orgs = client("organizations", ep)
    sts = client("sts", ep)
    org_id = orgs.create_organization(FeatureSet="ALL")["Organization"]["Id"]
    root_id = orgs.list_roots()["Roots"][0]["Id"]
    ou_ids = {"": root_id}

    def ou(path):
        if path in ou_ids:
            return ou_ids[path]
        parent, _, name = path.rpartition("/")
        ou_ids[path] = orgs.create_organizational_unit(ParentId=ou(parent), Name=name)["OrganizationalUnit"]["Id"]
        return ou_ids[path]

    out = {"management_account_id": MANAGEMENT_ACCOUNT, "accounts": {}, "keys": {}, "ous": {}}
    backdates = []
    trail = {}  # (account id, region) -> CloudTrail events
    scanner_principal = f"arn:aws:iam::{MANAGEMENT_ACCOUNT}:user/keywarden-scanner"
    for acct in spec.get("accounts", []):
        if acct.get("management"):
            account_id = MANAGEMENT_ACCOUNT
            # moto calls it "master": use the spec's name and email, as a real Organization would.
            hook(ep, "/_keywarden/org", {"op": "rename_account", "management_account_id": account_id,
                                         "account_id": account_id, "name": acct["name"],
                                         "email": acct.get("email")})
            if acct.get("tags"):
                orgs.tag_resource(ResourceId=account_id,
                                  Tags=[{"Key": k, "Value": v} for k, v in acct["tags"].items()])
            iam = client("iam", ep)
        else:
            created = orgs.create_account(Email=acct["email"], AccountName=acct["name"],
                                          Tags=[{"Key": k, "Value": v} for k, v in acct.get("tags", {}).items()])
            account_id = created["CreateAccountStatus"]["AccountId"]
            if acct.get("ou"):
                orgs.move_account(AccountId=account_id, SourceParentId=root_id, DestinationParentId=ou(acct["ou"]))
            creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
                                    RoleSessionName="seed")["Credentials"]
            iam = client("iam", ep, creds)
            if acct.get("scan_role", "ok") == "stackset":
                deploy_member_role(ep, creds, spec, acct, role_name, org_id)
            elif acct.get("scan_role") == "none":
                pass  # the StackSet never reached this account
            else:
                actions = IAM_ACTIONS if acct.get("scan_role", "ok") == "ok" else ["iam:ListAccountAliases"]
                trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                  "Principal": {"AWS": scanner_principal}}]}
                iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))
                iam.put_role_policy(RoleName=role_name, PolicyName="keywarden-read", PolicyDocument=json.dumps(
                    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
        out["accounts"][acct["name"]] = account_id
        if acct.get("securityhub"):
            hook(ep, "/_keywarden/securityhub", {"account_id": account_id, "enabled": True,
                                                 "region": acct.get("securityhub_region", "us-east-1")})
        if acct.get("alias"):
            iam.create_account_alias(AccountAlias=acct["alias"])
        if acct.get("root_key"):
            rk = acct["root_key"]
            used = rk.get("last_used_days")
            hook(ep, "/_keywarden/root-key", {
                "account_id": account_id, "active": rk.get("active", True),
                "created_at": iso(now - timedelta(days=rk["age_days"])),
                "last_used_at": iso(now - timedelta(days=used)) if used is not None else None})
        for group in acct.get("groups", []):
            iam.create_group(GroupName=group["name"])
            for arn in group.get("policies", []):
                iam.attach_group_policy(GroupName=group["name"], PolicyArn=arn)
        for user in acct.get("users", []):
            # "${now+60d}" in a tag value is the date 60 days after --now (exemption end dates).
            def relative(value):
                return re.sub(r"\$\{now\+(\d+)d\}",
                              lambda m: (now + timedelta(days=int(m.group(1)))).strftime("%Y-%m-%d"), value)
            iam.create_user(UserName=user["name"], Path=user.get("path", "/"),
                            Tags=[{"Key": k, "Value": relative(v)} for k, v in user.get("tags", {}).items()])
            for group in user.get("groups", []):
                iam.add_user_to_group(GroupName=group, UserName=user["name"])
            for arn in user.get("policies", []):
                iam.attach_user_policy(UserName=user["name"], PolicyArn=arn)
            for name, document in user.get("inline", {}).items():
                iam.put_user_policy(UserName=user["name"], PolicyName=name, PolicyDocument=json.dumps(document))
            if user.get("password"):
                iam.create_login_profile(UserName=user["name"], Password="Keywarden-test-1!")
            for i, key in enumerate(user.get("keys", [])):
                k = iam.create_access_key(UserName=user["name"])["AccessKey"]
                for e in key.get("events", []):
                    region = e.get("region") or key.get("region") or "us-east-1"
                    source, name = e["api"].split(":", 1)
                    for n in range(e.get("count", 1)):
                        event = {"eventTime": iso(now - timedelta(days=e["days_ago"], minutes=n)),
                                 "eventSource": f"{source}.amazonaws.com", "eventName": name,
                                 "accessKeyId": k["AccessKeyId"], "sourceIPAddress": e["ip"],
                                 "userAgent": e["ua"], "username": user["name"],
                                 "requestParameters": {"note": "never read by keywarden"}}
                        if e.get("vpce"):
                            event["vpcEndpointId"] = e["vpce"]
                        trail.setdefault((account_id, region), []).append(event)
                if key.get("status", "Active") != "Active":
                    iam.update_access_key(UserName=user["name"], AccessKeyId=k["AccessKeyId"], Status="Inactive")
                used = key.get("last_used_days")
                backdates.append({
                    "account_id": account_id, "user_name": user["name"], "access_key_id": k["AccessKeyId"],
                    "created_at": iso(now - timedelta(days=key["age_days"])),
                    "last_used_at": iso(now - timedelta(days=used)) if used is not None else None,
                    "last_used_service": key.get("service", "s3"),
                    "last_used_region": key.get("region")})
                out["keys"][f"{acct['name']}/{user['name']}/{i}"] = k["AccessKeyId"]
    out["ous"] = {path: oid for path, oid in ou_ids.items() if path}
    hook(ep, "/_keywarden/backdate", backdates)
    for (account_id, region), events in trail.items():
        hook(ep, "/_keywarden/cloudtrail", {"account_id": account_id, "region": region, "events": events})

    s3 = client("s3", ep)
    for bucket in spec.get("buckets", []):
        b = bucket if isinstance(bucket, dict) else {"name": bucket}
        s3.create_bucket(Bucket=b["name"])
        if b.get("versioning"):
            s3.put_bucket_versioning(Bucket=b["name"], VersioningConfiguration={"Status": "Enabled"})
        if b.get("encryption"):
            s3.put_bucket_encryption(Bucket=b["name"], ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": b["encryption"]}}]})
    for principal in spec.get("trusted_services", []):
        orgs.enable_aws_service_access(ServicePrincipal=principal)

    ssm = client("ssm", ep)
    for p in spec.get("parameters", []):
        ssm.put_parameter(Name=p["name"], Type=p["type"], Value=p["value"])

    ses = client("sesv2", ep)
    for identity in spec.get("ses_identities", []):
        ses.create_email_identity(EmailIdentity=identity)

    if spec.get("scanner_user"):
        iam = client("iam", ep)
        iam.create_user(UserName="keywarden-scanner")
        actions = spec.get("scanner_actions", SCANNER_ORG_ACTIONS + IAM_ACTIONS)
        statements = [{"Effect": "Allow", "Action": actions, "Resource": "*"}]
        denied = [f"arn:aws:iam::{out['accounts'][name]}:role/{role_name}" for name in spec.get("deny_assume_role_in", [])]
        if denied:
            statements.append({"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": denied})
        iam.put_user_policy(UserName="keywarden-scanner", PolicyName="keywarden", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": statements}))
        k = iam.create_access_key(UserName="keywarden-scanner")["AccessKey"]
        out["scanner"] = {"access_key_id": k["AccessKeyId"], "secret_access_key": k["SecretAccessKey"]}
    if spec.get("enforce_auth"):
        req = urllib.request.Request(ep + "/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(req).read()
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
