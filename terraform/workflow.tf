# The Step Functions workflow (var.workflow) for Organizations that outgrow
# one 15-minute invocation: Plan -> Scan (Distributed Map over account
# batches) -> Finish -> Deliver (Distributed Map over mail batches) -> Close.
# Every task is the same function in a step mode (src/workflow.rs); the run's
# files live in the state bucket under <prefix>/<organization>/workflow/.
# Off by default: one invocation is simpler and enough below the crossover
# README names.

locals {
  workflow_definition = templatefile("${path.module}/workflow.asl.json", {
    function_arn       = aws_lambda_function.this.arn
    accounts_per_batch = var.workflow_accounts_per_batch
    scan_concurrency   = var.workflow_scan_concurrency
    mail_concurrency   = var.workflow_mail_concurrency
  })
  workflow_name = "${var.name}-workflow"
  workflow_arn  = "arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:${local.workflow_name}"
  # What the state machine itself calls (tests/infra.rs holds these to the definition).
  workflow_invoke_actions = ["lambda:InvokeFunction"]
  workflow_read_actions   = ["s3:GetObject"]
  workflow_map_actions    = ["states:StartExecution", "states:DescribeExecution", "states:StopExecution"]
}

data "aws_iam_policy_document" "assume_states" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "workflow" {
  count              = var.workflow ? 1 : 0
  name               = "${var.name}-workflow"
  description        = "Lets the keywarden workflow invoke the function, read its manifests and run its map children."
  assume_role_policy = data.aws_iam_policy_document.assume_states.json
  tags               = var.tags
}

data "aws_iam_policy_document" "workflow" {
  statement {
    sid       = "InvokeKeywarden"
    actions   = local.workflow_invoke_actions
    resources = [aws_lambda_function.this.arn, "${aws_lambda_function.this.arn}:*"]
  }
  statement {
    sid       = "ReadManifests"
    actions   = local.workflow_read_actions
    resources = ["${aws_s3_bucket.state.arn}/${local.state_prefix == "" ? "" : "${local.state_prefix}/"}*/workflow/*"]
  }
  statement {
    sid       = "RunMapChildren"
    actions   = local.workflow_map_actions
    resources = [local.workflow_arn, "arn:${local.partition}:states:${local.region}:${local.account_id}:execution:${local.workflow_name}/*"]
  }
  statement {
    sid = "DeliverLogs"
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
    ]
    # These log-delivery actions do not support resource-level permissions.
    resources = ["*"]
  }
  statement {
    sid       = "Trace"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    resources = ["*"]
  }
  # With a customer-managed key the manifests are SSE-KMS objects: the map's
  # ItemReader decrypts them through S3 only.
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "ReadEncryptedManifests"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${local.region}.amazonaws.com"]
      }
    }
  }
  # ... and the state machine encrypts its own execution data with the key
  # (encryption_configuration below): only in this state machine's context.
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "EncryptExecutionData"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
      condition {
        test     = "StringEquals"
        variable = "kms:EncryptionContext:aws:states:stateMachineArn"
        values   = [local.workflow_arn]
      }
    }
  }
}

resource "aws_iam_role_policy" "workflow" {
  count  = var.workflow ? 1 : 0
  name   = "keywarden-workflow"
  role   = aws_iam_role.workflow[0].id
  policy = data.aws_iam_policy_document.workflow.json
}

resource "aws_cloudwatch_log_group" "workflow" {
  count             = var.workflow ? 1 : 0
  name              = "/aws/vendedlogs/states/${local.workflow_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sfn_state_machine" "workflow" {
  count      = var.workflow ? 1 : 0
  name       = local.workflow_name
  type       = "STANDARD"
  role_arn   = aws_iam_role.workflow[0].arn
  definition = local.workflow_definition

  logging_configuration {
    log_destination = "${aws_cloudwatch_log_group.workflow[0].arn}:*"
    # Failed steps only, with their input (run ids, account ids and names;
    # never a secret: messages stay in the bucket), to tell why.
    include_execution_data = true
    level                  = "ERROR"
  }

  tracing_configuration {
    enabled = var.tracing_mode == "Active"
  }

  dynamic "encryption_configuration" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      type                              = "CUSTOMER_MANAGED_KMS_KEY"
      kms_key_id                        = encryption_configuration.value
      kms_data_key_reuse_period_seconds = 300
    }
  }

  tags = var.tags

  depends_on = [aws_iam_role_policy.workflow]
}

resource "aws_cloudwatch_metric_alarm" "workflow_failed" {
  count               = var.workflow ? 1 : 0
  alarm_name          = "${var.name}-workflow-failed"
  alarm_description   = "A keywarden workflow run failed or was incomplete: the Organization was not fully checked, or somebody was not told."
  namespace           = "AWS/States"
  metric_name         = "ExecutionsFailed"
  dimensions          = { StateMachineArn = aws_sfn_state_machine.workflow[0].arn }
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
