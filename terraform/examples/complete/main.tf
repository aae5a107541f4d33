# keywarden in the management account: the function, its schedule and alarm,
# and the read-only member role in every account of the Organization.
#
#   scripts/build-lambda                       # builds target/lambda/keywarden/bootstrap.zip
#   cd terraform/examples/complete
#   terraform init && terraform apply -var organization_id=o-... -var organization_root_id=r-... \
#     -var sender=keywarden@example.com -var 'security_recipients=["security@example.com"]'

provider "aws" {
  region = var.region
}

variable "region" {
  description = "Region of the function (and of the SES identity)."
  type        = string
  default     = "us-east-1"
}

variable "organization_id" {
  description = "AWS Organizations id (o-...)."
  type        = string
}

variable "organization_root_id" {
  description = "Root id of the Organization (r-...): the member role goes to every account under it."
  type        = string
}

variable "sender" {
  description = "Verified SES identity the emails come from."
  type        = string
}

variable "security_recipients" {
  description = "Addresses of the security digest."
  type        = list(string)
}

resource "aws_sns_topic" "alarms" {
  name              = "keywarden-alarms"
  kms_master_key_id = "alias/aws/sns"
}

module "keywarden" {
  source = "../.."

  lambda_zip_path        = "${path.root}/../../../target/lambda/keywarden/bootstrap.zip"
  organization_id        = var.organization_id
  stackset_target_ou_ids = [var.organization_root_id]
  sender                 = var.sender
  security_recipients    = var.security_recipients
  alarm_sns_topic_arn    = aws_sns_topic.alarms.arn
  schedule_expression    = "cron(0 7 ? * MON-FRI *)"
  schedule_timezone      = "Europe/Berlin"

  settings = {
    max_age_days     = "90"
    warn_age_days    = "75"
    exempt_user_arns = "arn:aws:iam::*:user/break-glass-*"
  }

  tags = {
    project = "keywarden"
  }
}

output "function_name" {
  description = "Invoke it once by hand: aws lambda invoke --function-name <this> --payload '{\"dry_run\":true}' out.json"
  value       = module.keywarden.function_name
}

output "schedule_arn" {
  description = "The daily schedule."
  value       = module.keywarden.schedule_arn
}
