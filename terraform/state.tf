# The state bucket: the ledger (what earlier runs saw and sent) and the report
# archive, one folder per Organization under var.state_prefix. keywarden writes
# the ledger with conditional writes (If-Match / If-None-Match), so two runs
# can never silently overwrite each other; versioning keeps every earlier
# ledger, so a bad one can be rolled back.

locals {
  state_bucket = coalesce(var.state_bucket_name, "${var.name}-state-${local.account_id}")
  state_prefix = trim(var.state_prefix, "/")
  state_uri    = "s3://${aws_s3_bucket.state.bucket}/${local.state_prefix}"
  # The S3 actions keywarden calls on its state (tests/infra.rs: equal to src/aws/s3.rs).
  state_object_actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
  state_list_actions   = ["s3:ListBucket"]
  state_bucket_actions = ["s3:GetBucketVersioning", "s3:GetEncryptionConfiguration"]
  # Who may write the state (the bucket policy denies everyone else).
  state_writers = concat(
    [aws_iam_role.execution.arn],
    var.workflow ? [aws_iam_role.workflow[0].arn] : [],
    var.state_writer_arns,
  )
}

resource "aws_s3_bucket" "state" {
  #checkov:skip=CKV_AWS_18:access logging needs a separate log bucket this module does not own; CloudTrail data events cover who touched the ledger if required
  #checkov:skip=CKV_AWS_144:cross-region replication is a site decision; versioning already protects the ledger against bad writes
  #checkov:skip=CKV2_AWS_62:nothing consumes object events from the state bucket
  bucket        = local.state_bucket
  force_destroy = false
  tags          = var.tags
}

resource "aws_s3_bucket_versioning" "state" {
  bucket = aws_s3_bucket.state.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "state" {
  #checkov:skip=CKV2_AWS_67:rotation is a property of the caller's KMS key (var.kms_key_arn), not of this bucket
  bucket = aws_s3_bucket.state.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_public_access_block" "state" {
  bucket                  = aws_s3_bucket.state.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "state" {
  bucket = aws_s3_bucket.state.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

data "aws_iam_policy_document" "state_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.state.arn,
      "${aws_s3_bucket.state.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
  # The ledger and the workflow's files decide who is mailed and which key is
  # deactivated: only keywarden's own roles (and the operators named in
  # var.state_writer_arns) may write or delete them. Versioning keeps every
  # earlier ledger. PutBucketPolicy is not denied: an administrator can
  # always change this policy.
  statement {
    sid    = "OnlyKeywardenWritesState"
    effect = "Deny"
    actions = [
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:DeleteObjectVersion",
    ]
    resources = ["${aws_s3_bucket.state.arn}/${local.state_prefix}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = local.state_writers
    }
  }
}

resource "aws_s3_bucket_policy" "state" {
  bucket     = aws_s3_bucket.state.id
  policy     = data.aws_iam_policy_document.state_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.state]
}

resource "aws_s3_bucket_lifecycle_configuration" "state" {
  bucket = aws_s3_bucket.state.id

  # Archived run reports (JSON and CSV) expire; the ledger itself does not.
  rule {
    id     = "expire-run-reports"
    status = "Enabled"
    filter {
      prefix = "${local.state_prefix}/${var.organization_id}/reports/"
    }
    expiration {
      days = var.report_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  # Earlier versions of the ledger are kept this long, to roll back a bad one.
  rule {
    id     = "expire-old-ledger-versions"
    status = "Enabled"
    filter {
      prefix = "${local.state_prefix}/"
    }
    noncurrent_version_expiration {
      noncurrent_days = var.state_noncurrent_days
    }
  }

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.state]
}
