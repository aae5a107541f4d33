data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  ses_region = coalesce(var.ses_region, local.region)

  # The AWS actions keywarden calls. tests/infra.rs holds these lists equal to
  # the ones in the code (src/aws/*.rs) and the member-role template.
  organizations_actions = [
    "organizations:DescribeOrganization",
    "organizations:ListAccounts",
    "organizations:ListAccountsForParent",
    "organizations:ListChildren",
    "organizations:ListTagsForResource",
    # keywarden doctor: is StackSets' trusted access on.
    "organizations:ListAWSServiceAccessForOrganization",
  ]
  iam_read_actions = [
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
    # usage: where a flagged key is used (CloudTrail's event history; read-only).
    "cloudtrail:LookupEvents",
  ]
  ses_send_actions     = ["ses:SendEmail", "ses:SendRawEmail"]
  ses_identity_actions = ["ses:GetEmailIdentity"]
  ses_account_actions  = ["ses:GetAccount"]
  assume_member_action = ["sts:AssumeRole"]
  # Enforcement (src/aws/iam.rs ENFORCE_ACTIONS, DELETE_ACTIONS): only with enforcement = apply.
  enforce_actions = ["iam:ListAccessKeys", "iam:UpdateAccessKey"]
  delete_actions  = ["iam:DeleteAccessKey"]
  enforce_mode    = coalesce(var.enforce, var.enforcement)
  enforcing       = local.enforce_mode == "apply"
  deleting        = local.enforcing && var.delete_inactive_after_days != null

  # The chat webhook's URL (src/aws/ssm.rs SSM_ACTIONS): read only when a parameter is named.
  ssm_actions = ["ssm:GetParameter"]

  # Security Hub export (src/aws/securityhub.rs SECURITYHUB_ACTIONS): only with securityhub_export.
  securityhub_actions = ["securityhub:BatchImportFindings"]
  # keywarden doctor, with the same opt-in: is Security Hub on.
  securityhub_doctor_actions = ["securityhub:DescribeHub"]
  securityhub_region         = var.securityhub_region == "" ? local.region : var.securityhub_region

  sender_domain = split("@", var.sender)[1]
  allowed_recipient_domains = length(var.allowed_recipient_domains) > 0 ? var.allowed_recipient_domains : distinct(concat(
    [local.sender_domain],
    [for r in var.security_recipients : split("@", r)[1]],
  ))
  sender_identity_arns = [
    "arn:${local.partition}:ses:${local.ses_region}:${local.account_id}:identity/${var.sender}",
    "arn:${local.partition}:ses:${local.ses_region}:${local.account_id}:identity/${local.sender_domain}",
  ]
  configuration_set_arns = var.ses_configuration_set == null ? [] : [
    "arn:${local.partition}:ses:${local.ses_region}:${local.account_id}:configuration-set/${var.ses_configuration_set}",
  ]

  environment = merge(
    { for k, v in var.settings : "KEYWARDEN_${upper(k)}" => v },
    {
      KEYWARDEN_ROLE_NAME                 = var.role_name
      KEYWARDEN_SENDER                    = var.sender
      KEYWARDEN_SECURITY_RECIPIENTS       = join(",", var.security_recipients)
      KEYWARDEN_SES_REGION                = local.ses_region
      KEYWARDEN_STATE                     = local.state_uri
      KEYWARDEN_ALLOWED_RECIPIENT_DOMAINS = join(",", local.allowed_recipient_domains)
      KEYWARDEN_ENFORCE                   = local.enforce_mode
      KEYWARDEN_ENFORCE_ROLE_NAME         = var.enforce_role_name
    },
    var.delete_inactive_after_days == null ? {} : { KEYWARDEN_DELETE_INACTIVE_AFTER_DAYS = tostring(var.delete_inactive_after_days) },
    var.external_id == "" ? {} : { KEYWARDEN_EXTERNAL_ID = var.external_id },
    var.ses_configuration_set == null ? {} : { KEYWARDEN_CONFIGURATION_SET = var.ses_configuration_set },
    var.webhook_url_parameter == "" ? {} : { KEYWARDEN_WEBHOOK_URL_PARAMETER = var.webhook_url_parameter },
    var.webhook_format == "" ? {} : { KEYWARDEN_WEBHOOK_FORMAT = var.webhook_format },
    var.securityhub_export ? { KEYWARDEN_SECURITYHUB_EXPORT = "true", KEYWARDEN_SECURITYHUB_REGION = local.securityhub_region } : {},
  )
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  description        = "keywarden scanner: lists the Organization, assumes ${var.role_name} in member accounts, mails owners."
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
  tags               = var.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "ListOrganization"
    actions   = local.organizations_actions
    resources = ["*"]
  }

  # Only roles in accounts of this Organization, whatever their name says.
  statement {
    sid       = "AssumeMemberScanRole"
    actions   = local.assume_member_action
    resources = ["arn:${local.partition}:iam::*:role/${var.role_name}"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceOrgID"
      values   = [var.organization_id]
    }
  }

  # The management account itself is scanned with this role's own permissions:
  # StackSets do not deploy into the management account.
  statement {
    sid       = "ReadOwnAccountAccessKeys"
    actions   = local.iam_read_actions
    resources = ["*"]
  }

  # Mail only from the sender and only to the allowed domains (and their
  # subdomains), whatever a tag or a file in the state bucket says.
  statement {
    sid       = "SendFromSenderIdentity"
    actions   = local.ses_send_actions
    resources = concat(local.sender_identity_arns, local.configuration_set_arns)
    condition {
      test     = "ForAllValues:StringLike"
      variable = "ses:Recipients"
      values   = flatten([for d in local.allowed_recipient_domains : ["*@${d}", "*@*.${d}"]])
    }
    condition {
      test     = "StringEquals"
      variable = "ses:FromAddress"
      values   = [var.sender]
    }
  }

  # Before scanning: is the sender a verified identity?
  statement {
    sid       = "ReadSenderIdentity"
    actions   = local.ses_identity_actions
    resources = local.sender_identity_arns
  }

  statement {
    sid       = "ReadSendQuota"
    actions   = local.ses_account_actions
    resources = ["*"]
  }

  # The ledger and the report archive: only under the state prefix.
  statement {
    sid       = "ReadWriteState"
    actions   = local.state_object_actions
    resources = ["${aws_s3_bucket.state.arn}/${local.state_prefix}/*"]
  }

  # ListBucket makes a missing ledger read as "not found" (a first run), not AccessDenied.
  statement {
    sid       = "ListState"
    actions   = local.state_list_actions
    resources = [aws_s3_bucket.state.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.state_prefix}/*"]
    }
  }

  # keywarden doctor: is the bucket versioned, how is it encrypted (read-only, the bucket itself).
  statement {
    sid       = "ReadStateBucketSettings"
    actions   = local.state_bucket_actions
    resources = [aws_s3_bucket.state.arn]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  # Enforcement = apply: the member accounts' enforcement role, only in this Organization.
  dynamic "statement" {
    for_each = local.enforcing ? [var.enforce_role_name] : []
    content {
      sid       = "AssumeMemberEnforceRole"
      actions   = local.assume_member_action
      resources = ["arn:${local.partition}:iam::*:role/${statement.value}"]
      condition {
        test     = "StringEquals"
        variable = "aws:ResourceOrgID"
        values   = [var.organization_id]
      }
    }
  }

  # Enforcement = apply in the management account itself (StackSets skip it):
  # the same actions as the member enforcement role, on users only.
  dynamic "statement" {
    for_each = local.enforcing ? [local.account_id] : []
    content {
      sid       = "EnforceOwnAccount"
      actions   = local.deleting ? concat(local.enforce_actions, local.delete_actions) : local.enforce_actions
      resources = ["arn:${local.partition}:iam::${statement.value}:user/*"]
    }
  }

  # The chat webhook URL is a secret in one SSM SecureString parameter: this
  # parameter only, and only when one is named.
  dynamic "statement" {
    for_each = var.webhook_url_parameter == "" ? [] : [trimprefix(var.webhook_url_parameter, "/")]
    content {
      sid       = "ReadWebhookUrl"
      actions   = local.ssm_actions
      resources = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter/${statement.value}"]
    }
  }

  # Security Hub export from the management account (StackSets skip it): its
  # own default product only, only with securityhub_export. Member accounts
  # import with their scan role (the StackSet's EnableSecurityHubExport).
  dynamic "statement" {
    for_each = var.securityhub_export ? [local.account_id] : []
    content {
      sid       = "ImportOwnFindings"
      actions   = local.securityhub_actions
      resources = ["arn:${local.partition}:securityhub:${local.securityhub_region}:${statement.value}:product/${statement.value}/default"]
    }
  }

  dynamic "statement" {
    for_each = var.securityhub_export ? [local.account_id] : []
    content {
      sid       = "DescribeOwnHub"
      actions   = local.securityhub_doctor_actions
      resources = ["arn:${local.partition}:securityhub:${local.securityhub_region}:${statement.value}:hub/default"]
    }
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid = "UseKmsKey"
      # Decrypt: the environment and the ledger; GenerateDataKey: writing the ledger (SSE-KMS).
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "keywarden"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_117:keywarden only calls AWS APIs; a VPC would need NAT or endpoints for Organizations, IAM, STS and SES and adds nothing
  #checkov:skip=CKV_AWS_116:a failed run raises the Errors alarm (to var.alarm_sns_topic_arn) and is retried; the archived reports in the state bucket are the record, a DLQ would add nothing
  #checkov:skip=CKV_AWS_272:code signing needs a signing profile this module cannot create for you; enable it in your own pipeline if required
  function_name    = var.name
  description      = "keywarden: stale, unused and dangerous IAM access keys across the Organization"
  role             = aws_iam_role.execution.arn
  filename         = var.lambda_zip_path
  source_code_hash = filebase64sha256(var.lambda_zip_path)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = [var.architecture]
  memory_size      = var.memory_size
  timeout          = var.timeout
  # One run at a time; the workflow's map children run side by side.
  reserved_concurrent_executions = var.workflow ? max(var.workflow_scan_concurrency, var.workflow_mail_concurrency) + 1 : 1
  kms_key_arn                    = var.kms_key_arn

  environment {
    variables = local.environment
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.this.name
  }

  tracing_config {
    mode = var.tracing_mode
  }

  tags = var.tags

  depends_on = [aws_iam_role_policy.execution]
}

# A failed or incomplete run is retried: the ledger records every delivered
# message and nothing is sent twice on the same day, so a retry only re-scans,
# re-sends what was not delivered, and sends the security team one more digest.
resource "aws_lambda_function_event_invoke_config" "this" {
  function_name                = aws_lambda_function.this.function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 3600
}

data "aws_iam_policy_document" "assume_scheduler" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.name}-scheduler"
  description        = "Lets EventBridge Scheduler invoke the keywarden function."
  assume_role_policy = data.aws_iam_policy_document.assume_scheduler.json
  tags               = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  dynamic "statement" {
    for_each = var.workflow ? [] : [aws_lambda_function.this.arn]
    content {
      sid       = "InvokeKeywarden"
      actions   = ["lambda:InvokeFunction"]
      resources = [statement.value]
    }
  }
  dynamic "statement" {
    for_each = var.workflow ? [local.workflow_arn] : []
    content {
      sid       = "StartWorkflow"
      actions   = ["states:StartExecution"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "invoke-keywarden"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule" "daily" {
  name                         = "${var.name}-daily"
  description                  = "Runs keywarden (scan and notify), or starts its workflow."
  state                        = var.schedule_enabled ? "ENABLED" : "DISABLED"
  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = var.schedule_timezone
  kms_key_arn                  = var.kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = var.workflow ? aws_sfn_state_machine.workflow[0].arn : aws_lambda_function.this.arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({ source = "keywarden.schedule" })

    retry_policy {
      maximum_retry_attempts = 0
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  alarm_name          = "${var.name}-errors"
  alarm_description   = "A keywarden run failed: the Organization was not checked, or nobody was told."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.this.function_name }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_sns_topic_arn == null ? [] : [var.alarm_sns_topic_arn]
  ok_actions          = var.alarm_sns_topic_arn == null ? [] : [var.alarm_sns_topic_arn]
  tags                = var.tags
}

# The read-only member role in every account of the targeted OUs, now and in
# the future (auto deployment). StackSets skip the management account, which
# the function scans with its own role.
resource "aws_cloudformation_stack_set" "member_role" {
  name             = "${var.name}-member-role"
  description      = "keywarden read-only scan role (${var.role_name}) in member accounts"
  permission_model = "SERVICE_MANAGED"
  call_as          = var.stackset_call_as
  capabilities     = ["CAPABILITY_NAMED_IAM"]
  template_body    = file("${path.module}/../stacksets/member-role.yaml")

  parameters = {
    ScannerRoleArn    = aws_iam_role.execution.arn
    OrganizationId    = var.organization_id
    RoleName          = var.role_name
    ExternalId        = var.external_id
    EnableEnforcement = local.enforcing ? "true" : "false"
    EnableDeletion    = local.deleting ? "true" : "false"
    EnforceRoleName   = var.enforce_role_name

    EnableSecurityHubExport = var.securityhub_export ? "true" : "false"
  }

  auto_deployment {
    enabled                          = true
    retain_stacks_on_account_removal = false
  }

  operation_preferences {
    failure_tolerance_percentage = 10
    max_concurrent_percentage    = 25
    region_concurrency_type      = "PARALLEL"
  }

  managed_execution {
    active = true
  }

  tags = var.tags

  lifecycle {
    ignore_changes = [administration_role_arn]
  }
}

resource "aws_cloudformation_stack_set_instance" "member_role" {
  stack_set_name = aws_cloudformation_stack_set.member_role.name
  call_as        = var.stackset_call_as
  region         = coalesce(var.stackset_region, local.region)

  deployment_targets {
    organizational_unit_ids = var.stackset_target_ou_ids
  }

  operation_preferences {
    failure_tolerance_percentage = 10
    max_concurrent_percentage    = 25
  }
}
