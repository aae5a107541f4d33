#!/usr/bin/env python3
"""Test-only launcher: moto server with keywarden's test hooks.

moto has no clock control and its credential report lacks the root row and
last-used service. This wraps moto's WSGI app (it is not part of keywarden)
and adds, under /_keywarden/:

  POST /_keywarden/backdate   [{"account_id", "user_name", "access_key_id",
                                "created_at", "last_used_at", "last_used_service",
                                "last_used_region"}, ...]   (ISO 8601; last_used_at may be null)
  POST /_keywarden/root-key   {"account_id", "active", "created_at", "last_used_at"}
  POST /_keywarden/report-fault {"account_id", "mode": "malformed"|"stuck"|"slow"|null}
        malformed: the report is cut mid-row; stuck: never COMPLETE; slow: each
        GenerateCredentialReport takes 5 s
  POST /_keywarden/ses-fault {"reject": ["addr", ...], "throttle": N}
        SES refuses messages to these recipients (MessageRejected), and answers
        the next N sends with TooManyRequestsException (HTTP 429)
  POST /_keywarden/api-fault {"throttle_pct": 30, "error_pct": 10, "services": ["iam", "sts"], "seed": 1,
                             "operations": ["ListTagsForResource"] (JSON-protocol operations only; optional)}
        answers that share of the services' requests with Throttling (HTTP 400)
        or ServiceUnavailable (HTTP 503) before moto sees them; {} turns it off;
        "delay_ms": N holds each of the services' (operations') requests N ms first,
        as a slow or far service does
  GET  /_keywarden/api-fault  -> {"throttled": n, "errors": n}: what was injected
  POST /_keywarden/iam {"account_id", "op": "delete_access_key", "user_name", "access_key_id"}
                      {"account_id", "op": "update_access_key", "user_name", "access_key_id", "status"}
                      {"account_id", "op": "strip_role", "role_name"}: the role loses every inline policy
                      {"account_id", "op": "tag_user", "user_name", "tags": {key: value}}
                      {"account_id", "op": "attach_user_policy", "user_name", "policy_arn"}
    change an account's IAM behind the scanner's back (no auth), as its owner would between runs
  (IAM access-key actions are authorized against the user's ARN, as AWS does,
   not moto's "*": policies scoped to users can be tested)
  POST /_keywarden/org {"op": "rename_account", "management_account_id", "account_id", "name", "email"}
        moto names the management account "master" with a made-up email: give it the spec's
  POST /_keywarden/org {"op": "tag_account", "management_account_id", "account_id", "tags": {key: value}}
        change an account's Organizations tags between runs (as its owner would)
  GET  /_keywarden/keys -> {"<account id>": {"<user>": {"<key id>": "Active"|"Inactive"}}}: every user key
  POST /_keywarden/securityhub {"account_id", "region", "enabled": true|false}: turn an account's
        Security Hub on or off (as its owner would)
  GET  /_keywarden/securityhub -> {"<account id>": {"<region>": [finding, ...]}}: every imported finding
  (Security Hub's BatchImportFindings behaves as AWS's does where moto 5.2.1 does not: it is
   refused with InvalidAccessException where Security Hub is not enabled, with
   AccessDeniedException for a finding of another account, and it is authorized
   against the findings' product ARN, not "*")
  POST /_keywarden/ses-account {"account_id", "region", "production_access": bool, "sending_enabled": bool,
                                "max_24_hour_send", "max_send_rate", "sent_last_24_hours"}
        SES v2 GetAccount answers this (moto 5.2.1 has no GetAccount; without the hook it
        answers 404, as before); {"account_id", "region", "remove": true} takes it back
  POST /_keywarden/ses-identity {"account_id", "region", "identity", "verified": bool, "dkim": bool}
        an SES identity's verification and DKIM state (moto marks every identity
        VerificationStatus SUCCESS but VerifiedForSendingStatus false, DKIM off)
  (S3 GetBucketVersioning answers with AWS's root element, VersioningConfiguration;
   STS AssumeRole of a role that does not exist is refused with AccessDenied, as AWS
   does, where moto 5.2.1 hands out credentials; OrganizationAccountAccessRole, which
   Organizations creates in every account it creates, counts as existing)
  POST /_keywarden/cloudtrail {"account_id", "region", "events": [{"eventTime", "eventSource", "eventName",
                                "accessKeyId", "sourceIPAddress", "userAgent", "vpcEndpointId"?, ...}]}
        CloudTrail LookupEvents (moto 5.2.1 has none) answers from these events, as AWS does:
        JSON 1.1, newest first, MaxResults (at most 50) with NextToken, StartTime/EndTime, the
        AccessKeyId lookup attribute, 2 requests per second per account and region
        (ThrottlingException), and cloudtrail:LookupEvents authorized with IAM enforcement on
        (AccessDeniedException); {"account_id", "region", "events": []} clears them;
        {"account_id", "region", "throttle": true|false}: every call there is throttled (or not)
  GET  /_keywarden/cloudtrail -> {"calls": {"<account id>/<region>": n}, "throttled": n}
  GET  /_keywarden/health

It binds 127.0.0.1 on the given port (0: a free one) and prints
`KEYWARDEN_MOTO_PORT=<port>` once it is listening.
"""

import argparse
import base64
import io
import json
import logging
import random
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.core.exceptions import JsonRESTError
from moto.iam import access_control
from moto.iam import models as iam_models
from moto.iam.models import AccessKeyLastUsed, iam_backends
from moto.ses import exceptions as ses_exceptions
from moto.securityhub import models as securityhub_models
from moto.ses import models as ses_models
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

DATE = "%Y-%m-%dT%H:%M:%S+00:00"
HEADER = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
    "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
    "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,"
    "cert_1_last_rotated,cert_2_active,cert_2_last_rotated\n"
)

ROOT_KEYS = {}  # account_id -> {"active", "created_at", "last_used_at"}
SES_FAULTS = {"reject": set(), "throttle": 0}
API_FAULTS = {"throttle_pct": 0, "error_pct": 0, "services": set(), "rng": random.Random(0),
              "throttled": 0, "errors": 0, "lock": threading.Lock()}

THROTTLING = ('<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type>'
              '<Code>Throttling</Code><Message>Rate exceeded</Message></Error>'
              '<RequestId>keywarden-fault</RequestId></ErrorResponse>')
UNAVAILABLE = ('<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Receiver</Type>'
               '<Code>ServiceUnavailable</Code><Message>Service is unavailable</Message></Error>'
               '<RequestId>keywarden-fault</RequestId></ErrorResponse>')


def signing_service(environ):
    """The service in the SigV4 credential scope: .../<region>/<service>/aws4_request."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scope = auth.partition("Credential=")[2].partition(",")[0].split("/")
    return scope[3] if len(scope) > 3 else None


def json_fault(status, code, message):
    """An error in the awsJson protocol (Organizations), as AWS sends it."""
    return Response(json.dumps({"__type": code, "Message": message}), status=status,
                    content_type="application/x-amz-json-1.1", headers={"x-amzn-ErrorType": code})


def injected_fault(environ):
    f = API_FAULTS
    if not f["services"] or signing_service(environ) not in f["services"]:
        return None
    operations = f.get("operations") or set()
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if operations and target.rsplit(".", 1)[-1] not in operations:
        return None
    if f.get("delay_ms"):
        time.sleep(f["delay_ms"] / 1000)
    json_protocol = "HTTP_X_AMZ_TARGET" in environ
    rest_json = signing_service(environ) == "securityhub"
    with f["lock"]:
        draw = f["rng"].random() * 100
        if draw < f["throttle_pct"]:
            f["throttled"] += 1
            if rest_json:
                return json_fault(429, "TooManyRequestsException", "Rate exceeded")
            if json_protocol:
                return json_fault(400, "TooManyRequestsException", "AWS Organizations can't complete your request because of a rate limit.")
            return Response(THROTTLING, status=400, content_type="text/xml")
        if draw < f["throttle_pct"] + f["error_pct"]:
            f["errors"] += 1
            if rest_json:
                return json_fault(500, "InternalException", "Internal service error")
            if json_protocol:
                return json_fault(500, "ServiceException", "AWS Organizations can't complete your request because of an internal service error.")
            return Response(UNAVAILABLE, status=503, content_type="text/xml")
    return None
REPORT_FAULTS = {}  # account_id -> "malformed" | "stuck"
SES_ACCOUNTS = {}  # (account_id, region) -> GetAccount's answer


def parse_time(value):
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc).replace(tzinfo=None)


def fmt(value):
    return value.strftime(DATE) if value is not None else "N/A"


def key_columns(key):
    """Columns for one key slot, as real IAM writes them."""
    if key is None:
        return ["false", "N/A", "N/A", "N/A", "N/A"]
    used = key.last_used
    if used is None:
        used_cols = ["N/A", "N/A", "N/A"]
    elif isinstance(used, AccessKeyLastUsed):
        used_cols = [fmt(used.timestamp), used.region or "N/A", used.service or "N/A"]
    else:  # a bare datetime, as some moto users set it
        used_cols = [fmt(used), "N/A", "N/A"]
    return ["true" if key.status == "Active" else "false", fmt(key.create_date)] + used_cols


def user_row(user):
    keys = list(user.access_keys)[:2] + [None, None]
    mfa = "true" if len(user.mfa_devices) else "false"
    password = "true" if user.password else "false"
    fields = [user.name, user.arn, fmt(user.create_date), password, "no_information" if user.password else "N/A",
              "N/A", "N/A", mfa] + key_columns(keys[0]) + key_columns(keys[1]) + ["false", "N/A", "false", "N/A"]
    return ",".join(csv_quote(f) for f in fields) + "\n"


def csv_quote(field):
    if any(c in field for c in ',"\n\r'):
        return '"' + field.replace('"', '""') + '"'
    return field


def root_row(account_id, partition):
    root = ROOT_KEYS.get(account_id)
    if root is None:
        key = ["false", "N/A", "N/A", "N/A", "N/A"]
    else:
        used = parse_time(root.get("last_used_at"))
        key = ["true" if root.get("active", True) else "false", fmt(parse_time(root["created_at"])),
               fmt(used), "us-east-1" if used else "N/A", "iam" if used else "N/A"]
    fields = ["<root_account>", f"arn:{partition}:iam::{account_id}:root", "2020-01-01T00:00:00+00:00",
              "not_supported", "no_information", "not_supported", "not_supported", "true"] + key + \
             ["false", "N/A", "N/A", "N/A", "N/A", "false", "N/A", "false", "N/A"]
    return ",".join(fields) + "\n"


def get_credential_report(self):
    fault = REPORT_FAULTS.get(self.account_id)
    if fault == "stuck":
        raise iam_models.ReportNotPresentException("Credential report not present")
    if not self.credential_report:
        raise iam_models.ReportNotPresentException("Credential report not present")
    partition = self.region_name if self.region_name.startswith("aws-") else "aws"
    report = HEADER + root_row(self.account_id, partition)
    for name in sorted(self.users):
        report += user_row(self.users[name])
    if fault == "malformed":
        report = report[: len(report) * 2 // 3]  # truncated mid-row
    return report


def generate_report(self):
    if REPORT_FAULTS.get(self.account_id) == "slow":
        time.sleep(5)
    if REPORT_FAULTS.get(self.account_id) == "stuck":
        self.credential_report = None
        return
    self.credential_report = True


iam_models.IAMBackend.get_credential_report = get_credential_report
iam_models.IAMBackend.generate_report = generate_report

# moto 5.2.1 checks SigV4 signatures (with policy enforcement on) in a way
# that breaks REST requests such as SES v2 GetEmailIdentity("a@b.com"), from
# boto3 as from the Rust SDK: it hashes the parsed parameters of a body-less
# GET instead of the empty body, and signs the percent-decoded path. Real AWS
# hashes the empty body and signs the encoded path: do the same. It also
# signs the query as it arrived, percent-decoded ("prefix=a/b/" for S3
# ListObjectsV2), where SigV4 signs each name and value encoded ("a%2Fb%2F").
_create_aws_request = access_control.IAMRequestBase._create_aws_request


def create_aws_request_as_aws(self):
    original_path, original_data = self._path, self._data
    path, sep, query = self._path.partition("?")
    query = urllib.parse.urlencode(
        urllib.parse.parse_qsl(query, keep_blank_values=True),
        quote_via=urllib.parse.quote,
        safe="-_.~",
    )
    self._path = urllib.parse.quote(path, safe="/~") + sep + query
    if not self._body and self._method in ("GET", "HEAD", "DELETE"):
        self._data = b""
    try:
        return _create_aws_request(self)
    finally:
        self._path, self._data = original_path, original_data


access_control.IAMRequestBase._create_aws_request = create_aws_request_as_aws

# moto 5.2.1 stores the inline policies of a CloudFormation-created role as
# parsed objects, and its policy enforcement then fails on them (KeyError
# 'policy_document', HTTP 500). IAM keeps policy documents as JSON text: do the same.
_role_put_policy = iam_models.Role.put_policy


def role_put_policy_as_json(self, policy_name, policy_json):
    if not isinstance(policy_json, str):
        policy_json = json.dumps(policy_json)
    return _role_put_policy(self, policy_name, policy_json)


iam_models.Role.put_policy = role_put_policy_as_json

# moto 5.2.1 authorizes every IAM action against the resource "*", so a
# policy scoped to users (arn:aws:iam::<account>:user/*, as keywarden's
# enforcement role is) denies everything. AWS evaluates the user's ARN:
# do the same for the access-key actions that name a user.
from moto.core.authorization import ActionAuthenticatorMixin  # noqa: E402

USER_KEY_ACTIONS = {"ListAccessKeys", "UpdateAccessKey", "DeleteAccessKey", "ListUserTags",
                    "CreateAccessKey", "GetUser"}
_normal_auth = ActionAuthenticatorMixin._authenticate_and_authorize_normal_action


def normal_auth_with_user_resource(self, resource="*"):
    if resource == "*" and type(self).__module__.startswith("moto.securityhub"):
        # AWS authorizes BatchImportFindings against the product the findings
        # name (a policy may allow only the account's default product).
        try:
            if self._get_action() == "DescribeHub":
                resource = f"arn:aws:securityhub:{self.region}:{self.current_account}:hub/default"
            if self._get_action() == "BatchImportFindings":
                findings = json.loads(self.body or b"{}").get("Findings") or [{}]
                resource = findings[0].get("ProductArn") or resource
        except Exception:  # an unparsable request keeps moto's own behaviour
            pass
    if resource == "*" and type(self).__module__.startswith("moto.iam"):
        try:
            action = self._get_action()
            user = self._get_param("UserName") if action in USER_KEY_ACTIONS else None
        except Exception:  # an unparsable request keeps moto's own behaviour
            user = None
        if user:
            try:
                resource = iam_backends[self.current_account]["global"].get_user(user).arn
            except Exception:
                resource = f"arn:aws:iam::{self.current_account}:user/{user}"
    return _normal_auth(self, resource)


ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = normal_auth_with_user_resource

_send_raw_email = ses_models.SESBackend.send_raw_email

# Security Hub's BatchImportFindings as AWS answers it (moto 5.2.1 imports into
# any account, enabled or not): refused where Security Hub is not enabled, and
# a finding of another account is refused (AccessDeniedException) with the
# default product.
_batch_import_findings = securityhub_models.SecurityHubBackend.batch_import_findings


def batch_import_findings_as_aws(self, findings):
    if not self.enabled:
        raise securityhub_models.RESTError(
            "InvalidAccessException",
            f"Account {self.account_id} is not subscribed to AWS Security Hub")
    for finding in findings:
        if finding.get("AwsAccountId") != self.account_id:
            raise securityhub_models.RESTError(
                "AccessDeniedException",
                f"User is not authorized to import findings for account {finding.get('AwsAccountId')}")
    return _batch_import_findings(self, findings)


securityhub_models.SecurityHubBackend.batch_import_findings = batch_import_findings_as_aws


def securityhub_change(body):
    backend = securityhub_models.securityhub_backends[body["account_id"]][body.get("region", "us-east-1")]
    if body.get("enabled", True):
        backend.enable_security_hub()
    elif backend.enabled:
        backend.disable_security_hub()


def send_raw_email_with_faults(self, source, destinations, raw_data):
    if SES_FAULTS["throttle"] > 0:
        SES_FAULTS["throttle"] -= 1
        err = JsonRESTError("TooManyRequestsException", "Maximum sending rate exceeded.")
        err.code = 429
        raise err
    rejected = [d for d in destinations if d in SES_FAULTS["reject"]]
    if rejected:
        raise ses_exceptions.MessageRejectedError(f"Address blacklisted: {rejected[0]}")
    return _send_raw_email(self, source, destinations, raw_data)


ses_models.SESBackend.send_raw_email = send_raw_email_with_faults


def iam_change(body):
    backend = iam_backends[body["account_id"]]["global"]
    op = body["op"]
    if op == "delete_access_key":
        backend.delete_access_key(body["access_key_id"], body["user_name"])
    elif op == "update_access_key":
        backend.update_access_key(body["user_name"], body["access_key_id"], body["status"])
    elif op == "strip_role":
        for name in backend.list_role_policies(body["role_name"]):
            backend.delete_role_policy(body["role_name"], name)
    elif op == "tag_user":
        backend.tag_user(body["user_name"], [{"Key": k, "Value": v} for k, v in body["tags"].items()])
    elif op == "attach_user_policy":
        backend.attach_user_policy(body["policy_arn"], body["user_name"])
    else:
        raise ValueError(f"unknown op {op!r}")


def org_change(body):
    from moto.organizations.models import organizations_backends
    backend = organizations_backends[body["management_account_id"]]["global"]
    if body["op"] == "tag_account":
        backend.tag_resource(ResourceId=body["account_id"],
                             Tags=[{"Key": k, "Value": v} for k, v in body["tags"].items()])
        return
    if body["op"] != "rename_account":
        raise ValueError(f"unknown op {body['op']!r}")
    account = next(a for a in backend.accounts if a.id == body["account_id"])
    account.name = body["name"]
    if body.get("email"):
        account.email = body["email"]


def backdate(entries):
    for e in entries:
        backend = iam_backends[e["account_id"]]["global"]
        user = backend.get_user(e["user_name"])
        key = next(k for k in user.access_keys if k.access_key_id == e["access_key_id"])
        if "created_at" in e:
            key.create_date = parse_time(e["created_at"])
            if user.create_date > key.create_date:
                user.create_date = key.create_date
        if "last_used_at" in e:
            when = parse_time(e["last_used_at"])
            key.last_used = None if when is None else AccessKeyLastUsed(
                timestamp=when, service=e.get("last_used_service") or "iam",
                region=e.get("last_used_region") or "us-east-1")


def request_account(environ):
    """The account of the request's access key (moto's own mapping)."""
    from moto.iam.models import get_account_id_from
    auth = environ.get("HTTP_AUTHORIZATION", "")
    key = auth.partition("Credential=")[2].partition("/")[0]
    return get_account_id_from(key) if key else "123456789012"


def signing_region(environ):
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scope = auth.partition("Credential=")[2].partition(",")[0].split("/")
    return scope[2] if len(scope) > 2 else "us-east-1"


def answered_as_aws(environ):
    """Answers AWS gives where moto 5.2.1 answers otherwise (or not at all)."""
    service = signing_service(environ)
    path = environ.get("PATH_INFO", "")
    if service == "ses" and path == "/v2/email/account" and environ.get("REQUEST_METHOD") == "GET":
        found = SES_ACCOUNTS.get((request_account(environ), signing_region(environ)))
        if found is not None:
            return Response(json.dumps(found), content_type="application/json")
        return None
    if service == "sts" and environ.get("REQUEST_METHOD") == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if form.get("Action") != ["AssumeRole"]:
            return None
        arn = (form.get("RoleArn") or [""])[0]
        parts = arn.split(":")
        if len(parts) < 6 or not parts[5].startswith("role/"):
            return None
        account, name = parts[4], parts[5].rsplit("/", 1)[-1]
        if name == "OrganizationAccountAccessRole":
            return None
        backend = iam_backends[account]["global"]
        if any(r.name == name for r in backend.roles.values()):
            return None
        caller = f"arn:aws:iam::{request_account(environ)}:user/caller"
        xml = ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
               '<Code>AccessDenied</Code><Message>User: ' + caller + ' is not authorized to perform: '
               'sts:AssumeRole on resource: ' + arn + '</Message></Error>'
               '<RequestId>keywarden-as-aws</RequestId></ErrorResponse>')
        return Response(xml, status=403, content_type="text/xml")
    return None


CLOUDTRAIL_EVENTS = {}  # (account_id, region) -> [event]
CLOUDTRAIL_THROTTLED = set()  # (account_id, region): every LookupEvents is throttled
CLOUDTRAIL = {"lock": threading.Lock(), "calls": {}, "throttled": 0, "recent": {}}
# The SDKs send "CloudTrail_20131101.LookupEvents" (Rust) or with the
# "com.amazonaws.cloudtrail.v20131101." prefix (boto3); AWS takes both.
LOOKUP_EVENTS = "CloudTrail_20131101.LookupEvents"
# CloudTrail's LookupEvents quota: 2 requests per second per account per region.
LOOKUP_EVENTS_PER_SECOND = 2


def cloudtrail_fault(code, message):
    return Response(json.dumps({"__type": code, "Message": message}), status=400,
                    content_type="application/x-amz-json-1.1", headers={"x-amzn-ErrorType": code})


def epoch(value):
    return parse_time(value).timestamp()


def lookup_events(environ):
    """CloudTrail LookupEvents as AWS answers it (see the module docs)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    account, region = request_account(environ), signing_region(environ)
    denied = cloudtrail_denied(environ, account, body)
    if denied:
        return cloudtrail_fault("AccessDeniedException", denied)
    now = time.monotonic()
    with CLOUDTRAIL["lock"]:
        recent = [t for t in CLOUDTRAIL["recent"].get((account, region), []) if now - t < 1.0]
        if len(recent) >= LOOKUP_EVENTS_PER_SECOND or (account, region) in CLOUDTRAIL_THROTTLED:
            CLOUDTRAIL["throttled"] += 1
            CLOUDTRAIL["recent"][(account, region)] = recent
            return cloudtrail_fault("ThrottlingException", "Rate exceeded")
        recent.append(now)
        CLOUDTRAIL["recent"][(account, region)] = recent
        key = f"{account}/{region}"
        CLOUDTRAIL["calls"][key] = CLOUDTRAIL["calls"].get(key, 0) + 1
    request = json.loads(body or b"{}")
    wanted = {}
    for a in request.get("LookupAttributes") or []:
        wanted[a.get("AttributeKey")] = a.get("AttributeValue")
    unknown = set(wanted) - {"AccessKeyId", "EventName", "EventSource", "Username"}
    if unknown:
        return cloudtrail_fault("InvalidLookupAttributesException", f"unsupported lookup attribute {sorted(unknown)}")
    limit = int(request.get("MaxResults") or 50)
    if not 1 <= limit <= 50:
        return cloudtrail_fault("InvalidMaxResultsException", "MaxResults must be between 1 and 50")
    start, end = request.get("StartTime"), request.get("EndTime")
    field = {"AccessKeyId": "accessKeyId", "EventName": "eventName", "EventSource": "eventSource"}
    events = [e for e in CLOUDTRAIL_EVENTS.get((account, region), [])
              if all(e.get(field.get(k, "username")) == v for k, v in wanted.items())
              and (start is None or epoch(e["eventTime"]) >= float(start))
              and (end is None or epoch(e["eventTime"]) <= float(end))]
    events.sort(key=lambda e: epoch(e["eventTime"]), reverse=True)
    offset = 0
    if request.get("NextToken"):
        try:
            offset = int(base64.b64decode(request["NextToken"]).decode().removeprefix("page:"))
        except Exception:
            return cloudtrail_fault("InvalidNextTokenException", "Invalid NextToken")
    page = events[offset:offset + limit]
    answer = {"Events": [{
        "EventId": e.get("eventID") or f"ev-{offset + i}",
        "EventName": e.get("eventName"),
        "ReadOnly": "true" if e.get("readOnly", True) else "false",
        "AccessKeyId": e.get("accessKeyId"),
        "EventTime": epoch(e["eventTime"]),
        "EventSource": e.get("eventSource"),
        "Username": e.get("username", ""),
        "Resources": [],
        "CloudTrailEvent": json.dumps({"eventVersion": "1.09", "awsRegion": region, **e}),
    } for i, e in enumerate(page)]}
    if offset + limit < len(events):
        answer["NextToken"] = base64.b64encode(f"page:{offset + limit}".encode()).decode()
    return Response(json.dumps(answer), content_type="application/x-amz-json-1.1")


def cloudtrail_denied(environ, account, body):
    """With IAM enforcement on, why the caller may not call LookupEvents (None: it may)."""
    from moto import settings as moto_settings
    from moto.core.authorization import ActionAuthenticatorMixin as auth
    if auth.request_count < moto_settings.INITIAL_NO_AUTH_ACTION_COUNT:
        return None
    headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
    try:
        request = access_control.IAMRequest(account_id=account, method="POST", path="/", data={},
                                            body=body, headers=headers, action="LookupEvents")
        request.check_action_permitted("*")
    except Exception as exc:  # moto's AccessDenied (or an unknown key): AWS says AccessDenied
        return getattr(exc, "message", None) or str(exc) or "not authorized to perform: cloudtrail:LookupEvents"
    return None


def cloudtrail_change(body):
    where = (body["account_id"], body.get("region", "us-east-1"))
    if "events" in body:
        CLOUDTRAIL_EVENTS[where] = list(body.get("events") or [])
    if "throttle" in body:
        (CLOUDTRAIL_THROTTLED.add if body["throttle"] else CLOUDTRAIL_THROTTLED.discard)(where)


def versioning_as_aws(app, environ, start_response):
    """S3 GetBucketVersioning: moto 5.2.1 names the root element
    GetBucketVersioningResponse; AWS (and the SDKs' parsers) say VersioningConfiguration."""
    captured = {}

    def capture(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    body = b"".join(app(environ, capture))
    if captured["status"].startswith("200"):
        body = body.replace(b"GetBucketVersioningResponse", b"VersioningConfiguration")
    headers = [(k, str(len(body)) if k.lower() == "content-length" else v) for k, v in captured["headers"]]
    start_response(captured["status"], headers)
    return [body]


def ses_identity_change(body):
    backend = ses_models.ses_backends[body["account_id"]][body.get("region", "us-east-1")]
    identity = backend.email_identities[body["identity"]]
    if "verified" in body:
        identity.verified_for_sending_status = bool(body["verified"])
        identity.verification_status = "SUCCESS" if body["verified"] else "PENDING"
    if "dkim" in body:
        identity.dkim_attributes["SigningEnabled"] = bool(body["dkim"])
        identity.dkim_attributes["Status"] = "SUCCESS" if body["dkim"] else "NOT_STARTED"


class Hooks:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/_keywarden/"):
            fault = injected_fault(environ)
            if fault is not None:
                return fault(environ, start_response)
            if environ.get("HTTP_X_AMZ_TARGET", "").endswith(LOOKUP_EVENTS):
                return lookup_events(environ)(environ, start_response)
            answer = answered_as_aws(environ)
            if answer is not None:
                return answer(environ, start_response)
            if (signing_service(environ) == "s3" and environ.get("REQUEST_METHOD") == "GET"
                    and "versioning" in urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)):
                return versioning_as_aws(self.app, environ, start_response)
            return self.app(environ, start_response)
        if path == "/_keywarden/keys" and environ.get("REQUEST_METHOD") == "GET":
            keys = {}
            for account_id, regions in list(iam_backends.items()):
                backend = regions["global"]
                users = {name: {k.access_key_id: k.status for k in u.access_keys}
                         for name, u in backend.users.items() if u.access_keys}
                if users:
                    keys[account_id] = users
            return Response(json.dumps(keys), content_type="application/json")(environ, start_response)
        if path == "/_keywarden/securityhub" and environ.get("REQUEST_METHOD") == "GET":
            found = {}
            for account_id, regions in list(securityhub_models.securityhub_backends.items()):
                for region, backend in list(regions.items()):
                    if backend.findings:
                        found.setdefault(account_id, {})[region] = [f.as_dict() for f in backend.findings]
            return Response(json.dumps(found), content_type="application/json")(environ, start_response)
        if path == "/_keywarden/cloudtrail" and environ.get("REQUEST_METHOD") == "GET":
            with CLOUDTRAIL["lock"]:
                counts = {"calls": dict(CLOUDTRAIL["calls"]), "throttled": CLOUDTRAIL["throttled"]}
            return Response(json.dumps(counts), content_type="application/json")(environ, start_response)
        if path == "/_keywarden/api-fault" and environ.get("REQUEST_METHOD") == "GET":
            counts = {"throttled": API_FAULTS["throttled"], "errors": API_FAULTS["errors"]}
            return Response(json.dumps(counts), content_type="application/json")(environ, start_response)
        request = Request(environ)
        try:
            body = json.loads(request.get_data() or b"null")
            if path == "/_keywarden/backdate":
                backdate(body)
            elif path == "/_keywarden/iam":
                iam_change(body)
            elif path == "/_keywarden/org":
                org_change(body)
            elif path == "/_keywarden/securityhub":
                securityhub_change(body)
            elif path == "/_keywarden/root-key":
                ROOT_KEYS[body["account_id"]] = body
            elif path == "/_keywarden/report-fault":
                if body.get("mode"):
                    REPORT_FAULTS[body["account_id"]] = body["mode"]
                else:
                    REPORT_FAULTS.pop(body["account_id"], None)
            elif path == "/_keywarden/api-fault":
                with API_FAULTS["lock"]:
                    API_FAULTS["throttle_pct"] = float(body.get("throttle_pct", 0))
                    API_FAULTS["error_pct"] = float(body.get("error_pct", 0))
                    API_FAULTS["services"] = set(body.get("services", []))
                    API_FAULTS["operations"] = set(body.get("operations", []))
                    API_FAULTS["delay_ms"] = float(body.get("delay_ms", 0))
                    API_FAULTS["rng"] = random.Random(body.get("seed", 0))
            elif path == "/_keywarden/ses-account":
                where = (body["account_id"], body.get("region", "us-east-1"))
                if body.get("remove"):
                    SES_ACCOUNTS.pop(where, None)
                else:
                    SES_ACCOUNTS[where] = {
                        "DedicatedIpAutoWarmupEnabled": False,
                        "EnforcementStatus": "HEALTHY",
                        "ProductionAccessEnabled": bool(body.get("production_access", True)),
                        "SendingEnabled": bool(body.get("sending_enabled", True)),
                        "SendQuota": {"Max24HourSend": float(body.get("max_24_hour_send", 50000)),
                                      "MaxSendRate": float(body.get("max_send_rate", 14)),
                                      "SentLast24Hours": float(body.get("sent_last_24_hours", 0))},
                    }
            elif path == "/_keywarden/cloudtrail":
                cloudtrail_change(body)
            elif path == "/_keywarden/ses-identity":
                ses_identity_change(body)
            elif path == "/_keywarden/ses-fault":
                SES_FAULTS["reject"] = set(body.get("reject", []))
                SES_FAULTS["throttle"] = int(body.get("throttle", 0))
            elif path != "/_keywarden/health":
                return Response("unknown hook", status=404)(environ, start_response)
            return Response('{"ok": true}', content_type="application/json")(environ, start_response)
        except Exception as exc:  # a bad hook call must say why, not kill the server
            return Response(json.dumps({"error": repr(exc)}), status=400,
                            content_type="application/json")(environ, start_response)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = Hooks(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    print(f"KEYWARDEN_MOTO_PORT={server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
