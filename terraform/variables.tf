variable "name" {
  description = "Name of the function and prefix of every resource this module creates."
  type        = string
  default     = "keywarden"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,48}$", var.name))
    error_message = "name must be 1-48 letters, digits, hyphens or underscores."
  }
}

variable "lambda_zip_path" {
  description = "Path to the zip built by scripts/build-lambda (target/lambda/keywarden/bootstrap.zip)."
  type        = string

  validation {
    condition     = endswith(var.lambda_zip_path, ".zip")
    error_message = "lambda_zip_path must point to the .zip built by scripts/build-lambda."
  }
}

variable "architecture" {
  description = "Lambda architecture the zip was built for: arm64 (scripts/build-lambda) or x86_64."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be arm64 or x86_64."
  }
}

variable "memory_size" {
  description = "Memory of the function in MB."
  type        = number
  default     = 512

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be between 128 and 10240 MB."
  }
}

variable "timeout" {
  description = "Function timeout in seconds; keywarden stops starting accounts deadline_reserve_secs before it."
  type        = number
  default     = 900

  validation {
    condition     = var.timeout >= 60 && var.timeout <= 900
    error_message = "timeout must be between 60 and 900 seconds."
  }
}

variable "schedule_expression" {
  description = "When to run, as an EventBridge Scheduler cron() or rate() expression."
  type        = string
  default     = "cron(0 7 * * ? *)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.schedule_expression))
    error_message = "schedule_expression must be cron(...) or rate(...)."
  }
}

variable "schedule_timezone" {
  description = "IANA time zone of schedule_expression, e.g. Europe/Berlin."
  type        = string
  default     = "UTC"
}

variable "schedule_enabled" {
  description = "Whether the daily schedule is on."
  type        = bool
  default     = true
}

variable "organization_id" {
  description = "AWS Organizations id (o-...): only principals of this Organization may assume the member role."
  type        = string

  validation {
    condition     = can(regex("^o-[a-z0-9]{10,32}$", var.organization_id))
    error_message = "organization_id must look like o-abcdefghij."
  }
}

variable "role_name" {
  description = "Name of the read-only role in every member account (keywarden's role_name setting)."
  type        = string
  default     = "KeywardenScanRole"

  validation {
    condition     = can(regex("^[\\w+=,.@-]{1,64}$", var.role_name))
    error_message = "role_name must be a valid IAM role name."
  }
}

variable "external_id" {
  description = "Optional ExternalId the member role requires (keywarden's external_id setting); empty for none."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.external_id == "" || can(regex("^[\\w+=,.@:/-]{2,1224}$", var.external_id))
    error_message = "external_id must be 2-1224 of A-Z a-z 0-9 +=,.@:/_-."
  }
}

variable "stackset_target_ou_ids" {
  description = "Organization root id (r-...) or OU ids the member role is deployed to, recursively."
  type        = list(string)

  validation {
    condition     = length(var.stackset_target_ou_ids) > 0 && alltrue([for id in var.stackset_target_ou_ids : can(regex("^(r-[a-z0-9]{4,32}|ou-[a-z0-9]{4,32}-[a-z0-9]{8,32})$", id))])
    error_message = "stackset_target_ou_ids must list the root id (r-...) and/or OU ids (ou-...)."
  }
}

variable "stackset_region" {
  description = "Region the member-role stacks are created in (IAM is global: one region is enough). Defaults to the provider's region."
  type        = string
  default     = null
}

variable "stackset_call_as" {
  description = "SELF in the management account, DELEGATED_ADMIN in a delegated StackSets administrator account."
  type        = string
  default     = "SELF"

  validation {
    condition     = contains(["SELF", "DELEGATED_ADMIN"], var.stackset_call_as)
    error_message = "stackset_call_as must be SELF or DELEGATED_ADMIN."
  }
}

variable "sender" {
  description = "Verified SES identity (address) the emails come from."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s<>,;]+@[^@\\s<>,;]+\\.[^@\\s<>,;]+$", var.sender))
    error_message = "sender must be a bare email address."
  }
}

variable "security_recipients" {
  description = "Addresses that receive the security digest."
  type        = list(string)

  validation {
    condition     = length(var.security_recipients) > 0 && alltrue([for a in var.security_recipients : can(regex("^[^@\\s<>,;]+@[^@\\s<>,;]+\\.[^@\\s<>,;]+$", a))])
    error_message = "security_recipients must list at least one bare email address."
  }
}

variable "ses_region" {
  description = "Region of the SES identity; defaults to the provider's region."
  type        = string
  default     = null
}

variable "ses_configuration_set" {
  description = "Optional SES configuration set for sending (events, suppression); null for none."
  type        = string
  default     = null
}

variable "settings" {
  description = "Further keywarden settings (see README), e.g. { max_age_days = \"90\", exclude_ous = \"ou-ab12-cdef3456\" }; lists comma-separated."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for k in keys(var.settings) : contains([
      "warn_age_days", "max_age_days", "unused_days", "stale_inactive_days", "concurrency",
      "account_timeout_secs", "report_wait_secs", "deadline_reserve_secs", "include_accounts",
      "exclude_accounts", "include_ous", "exclude_ous", "exempt_accounts", "exempt_user_arns",
      "exempt_tag_key", "max_exemption_days", "owner_tag_keys", "account_owner_tag_keys", "notify_account_owners",
      "account_tags_max_age_days", "privilege_max_age_days", "usage_max_pages", "usage_refresh_days",
      "usage_max_keys_without_ledger",
      "reply_to", "max_send_rate", "console_link_template", "remind_every_days",
      "overdue_remind_every_days", "escalate_after_days", "deactivate_after_days", "enforce_min_notices",
      "enforce_final_notice_days", "enforce_max_per_day", "enforce_max_per_run",
    ], k)])
    error_message = "settings has a key keywarden does not know (or one this module sets itself: role_name, external_id, sender, security_recipients, ses_region, configuration_set, state, allowed_recipient_domains, enforce, enforce_role_name, delete_inactive_after_days, webhook_url_parameter, webhook_format, securityhub_export, securityhub_region; webhook_url is a secret and never a setting here)."
  }
}

variable "log_retention_days" {
  description = "How long the function's logs are kept."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value."
  }
}

variable "kms_key_arn" {
  description = "Optional KMS key for the log group and the function's environment; null uses AWS-managed keys."
  type        = string
  default     = null
}

variable "state_writer_arns" {
  description = "IAM principals (role or user ARNs) besides the function's and the workflow's roles that may write or delete objects under the state prefix: the operators who run `keywarden notify` or `keywarden doctor` against the shared ledger. Everyone else is denied by the bucket policy (the ledger and the workflow's files decide who is mailed and which key is deactivated)."
  type        = list(string)
  default     = []
}

variable "alarm_sns_topic_arn" {
  description = "Optional SNS topic notified when a run fails (Errors > 0); null creates the alarm without actions."
  type        = string
  default     = null
}

variable "tracing_mode" {
  description = "X-Ray tracing of the function: Active or PassThrough."
  type        = string
  default     = "Active"

  validation {
    condition     = contains(["Active", "PassThrough"], var.tracing_mode)
    error_message = "tracing_mode must be Active or PassThrough."
  }
}

variable "tags" {
  description = "Tags for every resource this module creates."
  type        = map(string)
  default     = {}
}

variable "state_bucket_name" {
  description = "Name of the state bucket (ledger and report archive); null: <name>-state-<account id>."
  type        = string
  default     = null
}

variable "state_prefix" {
  description = "Folder in the state bucket under which keywarden keeps <organization id>/ledger.json and <organization id>/reports/."
  type        = string
  default     = "keywarden"

  validation {
    condition     = length(trim(var.state_prefix, "/")) > 0
    error_message = "state_prefix must not be empty."
  }
}

variable "report_retention_days" {
  description = "Days an archived run report (JSON and CSV under reports/) is kept."
  type        = number
  default     = 400

  validation {
    condition     = var.report_retention_days >= 1
    error_message = "report_retention_days must be at least 1."
  }
}

variable "state_noncurrent_days" {
  description = "Days earlier versions of the ledger are kept (to roll back a bad one)."
  type        = number
  default     = 90

  validation {
    condition     = var.state_noncurrent_days >= 1
    error_message = "state_noncurrent_days must be at least 1."
  }
}

variable "allowed_recipient_domains" {
  description = "Domains owner mail may go to (subdomains included); empty: the domains of sender and security_recipients. Enforced twice: by keywarden and by an ses:Recipients condition on the function's role."
  type        = list(string)
  default     = []
}

variable "enforce" {
  description = "Opt-in enforcement, the setting `enforce`: off, plan (the report and digest say what apply would do; owners are told no date) or apply (deactivate keys after fair warning; creates KeywardenEnforceRole in member accounts). Roll out off -> plan for a few weeks -> apply. null: the value of `enforcement` (its old name)."
  type        = string
  default     = null

  validation {
    condition     = var.enforce == null || contains(["off", "plan", "apply"], coalesce(var.enforce, "off"))
    error_message = "enforce must be off, plan or apply."
  }
}

variable "enforcement" {
  description = "The old name of `enforce` (still accepted; `enforce` wins when both are set)."
  type        = string
  default     = "off"

  validation {
    condition     = contains(["off", "plan", "apply"], var.enforcement)
    error_message = "enforcement must be off, plan or apply."
  }
}

variable "delete_inactive_after_days" {
  description = "With enforcement = apply: also delete keys inactive this many days (irreversible; adds iam:DeleteAccessKey to the enforcement role). null: never delete."
  type        = number
  default     = null

  validation {
    condition     = var.delete_inactive_after_days == null ? true : var.delete_inactive_after_days >= 1
    error_message = "delete_inactive_after_days must be at least 1 (or null)."
  }
}

variable "enforce_role_name" {
  description = "Name of the member-account enforcement role (created only with enforcement = apply)."
  type        = string
  default     = "KeywardenEnforceRole"
}

variable "webhook_url_parameter" {
  description = "Name of an SSM SecureString parameter (in this account and region) holding a chat webhook URL; each run posts its summary there. Empty: no chat summary. The function may read this parameter only. With a customer-managed KMS key on the parameter, also grant kms:Decrypt on it (kms_key_arn)."
  type        = string
  default     = ""

  validation {
    condition     = var.webhook_url_parameter == "" || can(regex("^/?[A-Za-z0-9_.\\-/]+$", var.webhook_url_parameter))
    error_message = "webhook_url_parameter must be an SSM parameter name (letters, digits, _ . - /), not the URL itself."
  }
}

variable "webhook_format" {
  description = "Chat payload: slack (Block Kit), teams (Adaptive Card for a Workflows webhook) or json. Empty: from the URL's host (hooks.slack.com: slack; *.logic.azure.com, *.webhook.office.com, Power Automate: teams; else json)."
  type        = string
  default     = ""

  validation {
    condition     = contains(["", "slack", "teams", "json"], var.webhook_format)
    error_message = "webhook_format must be slack, teams, json or empty."
  }
}

variable "securityhub_export" {
  description = "Import every finding into the Security Hub of the account it belongs to (BatchImportFindings, default product). Adds securityhub:BatchImportFindings on each account's own default product: to the member scan role (StackSet EnableSecurityHubExport) and to the function's role for the management account."
  type        = bool
  default     = false
}

variable "securityhub_region" {
  description = "The region findings are imported into; empty: the function's region. Security Hub must be enabled there in every account (an account where it is not is named in the digest)."
  type        = string
  default     = ""

  validation {
    condition     = var.securityhub_region == "" || can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.securityhub_region))
    error_message = "securityhub_region must be an AWS region such as eu-west-1, or empty."
  }
}

variable "workflow" {
  description = "Run each day as a Step Functions workflow (plan, scan shards, finish, deliver batches, close) instead of one invocation: for Organizations whose run does not fit 15 minutes (docs/deploying.md: where the crossover is). The schedule then starts the workflow."
  type        = bool
  default     = false
}

variable "workflow_accounts_per_batch" {
  description = "Accounts per scan shard (the Distributed Map's ItemBatcher). One shard must finish within the function's timeout."
  type        = number
  default     = 100

  validation {
    condition     = var.workflow_accounts_per_batch >= 1 && var.workflow_accounts_per_batch <= 1000
    error_message = "workflow_accounts_per_batch must be between 1 and 1000."
  }
}

variable "workflow_scan_concurrency" {
  description = "Scan shards at once (MaxConcurrency). Each shard takes its share of the concurrency setting and paces itself to the STS and Organizations budgets, which the shards share."
  type        = number
  default     = 8

  validation {
    condition     = var.workflow_scan_concurrency >= 1 && var.workflow_scan_concurrency <= 100
    error_message = "workflow_scan_concurrency must be between 1 and 100."
  }
}

variable "workflow_mail_concurrency" {
  description = "Mail batches sent at once (MaxConcurrency); each paces to its share of the SES send rate, so together they keep to it."
  type        = number
  default     = 4

  validation {
    condition     = var.workflow_mail_concurrency >= 1 && var.workflow_mail_concurrency <= 40
    error_message = "workflow_mail_concurrency must be between 1 and 40."
  }
}
