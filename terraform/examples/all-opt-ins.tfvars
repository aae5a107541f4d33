# Every opt-in on: scripts/check-iac runs checkov over the module a second
# time with these values, so the least-privilege checks also see the
# statements that exist only when a feature is turned on.
enforcement                = "apply"
delete_inactive_after_days = 60
webhook_url_parameter      = "/keywarden/webhook-url"
securityhub_export         = true
securityhub_region         = "eu-west-1"
workflow                   = true
