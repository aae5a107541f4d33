output "function_arn" {
  description = "ARN of the keywarden function."
  value       = aws_lambda_function.this.arn
}

output "function_name" {
  description = "Name of the keywarden function (for aws lambda invoke)."
  value       = aws_lambda_function.this.function_name
}

output "execution_role_arn" {
  description = "ARN of the function's execution role: the only principal the member roles trust."
  value       = aws_iam_role.execution.arn
}

output "schedule_arn" {
  description = "ARN of the EventBridge Scheduler schedule."
  value       = aws_scheduler_schedule.daily.arn
}

output "log_group_name" {
  description = "CloudWatch Logs group of the function."
  value       = aws_cloudwatch_log_group.this.name
}

output "errors_alarm_arn" {
  description = "ARN of the alarm on failed runs."
  value       = aws_cloudwatch_metric_alarm.errors.arn
}

output "member_role_stack_set_name" {
  description = "Name of the StackSet that deploys the member role."
  value       = aws_cloudformation_stack_set.member_role.name
}

output "state_bucket" {
  description = "Name of the state bucket (ledger and report archive)."
  value       = aws_s3_bucket.state.bucket
}

output "state_uri" {
  description = "Where keywarden keeps its state (KEYWARDEN_STATE): s3://<bucket>/<prefix>."
  value       = local.state_uri
}

output "workflow_arn" {
  description = "ARN of the Step Functions workflow (var.workflow), or null."
  value       = var.workflow ? aws_sfn_state_machine.workflow[0].arn : null
}

output "doctor_command" {
  description = "Run this after apply: keywarden doctor, as the function (its role, its settings), read-only. Exit 0 ready, 3 warnings, 2 a blocker; each line names its fix."
  value       = "aws lambda invoke --region ${local.region} --function-name ${aws_lambda_function.this.function_name} --cli-binary-format raw-in-base64-out --payload '{\"doctor\": true}' /dev/stdout"
}
