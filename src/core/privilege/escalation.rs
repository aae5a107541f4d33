//! The well-known IAM privilege-escalation paths: an identity allowed any of
//! these (on any resource, not only itself) can give itself more. One table,
//! with its sources:
//!
//! - Rhino Security Labs, "AWS IAM Privilege Escalation – Methods and
//!   Mitigation" (Spencer Gietzen, 2018): methods 1–21.
//! - Bishop Fox, "iam-vulnerable" and its privilege-escalation path catalog
//!   (Seth Art, 2021), which adds the boundary removals and more compute
//!   services with iam:PassRole.

/// Actions that escalate on their own.
pub const ALONE: &[(&str, &str)] = &[
    (
        "iam:CreatePolicyVersion",
        "can rewrite a managed policy it has",
    ),
    (
        "iam:SetDefaultPolicyVersion",
        "can switch a policy to an older, broader version",
    ),
    ("iam:AttachUserPolicy", "can attach any policy to a user"),
    ("iam:AttachGroupPolicy", "can attach any policy to a group"),
    ("iam:AttachRolePolicy", "can attach any policy to a role"),
    ("iam:PutUserPolicy", "can write a user's inline policy"),
    ("iam:PutGroupPolicy", "can write a group's inline policy"),
    ("iam:PutRolePolicy", "can write a role's inline policy"),
    ("iam:AddUserToGroup", "can join a more privileged group"),
    ("iam:CreateAccessKey", "can create keys for other users"),
    (
        "iam:CreateLoginProfile",
        "can give other users a console password",
    ),
    (
        "iam:UpdateLoginProfile",
        "can change other users' console passwords",
    ),
    (
        "iam:UpdateAssumeRolePolicy",
        "can let itself assume a more privileged role",
    ),
    (
        "iam:DeleteUserPermissionsBoundary",
        "can remove a user's permissions boundary",
    ),
    (
        "iam:DeleteRolePermissionsBoundary",
        "can remove a role's permissions boundary",
    ),
    (
        "iam:PutUserPermissionsBoundary",
        "can replace a user's permissions boundary",
    ),
    (
        "iam:PutRolePermissionsBoundary",
        "can replace a role's permissions boundary",
    ),
    (
        "lambda:UpdateFunctionCode",
        "can run its own code as an existing function's role",
    ),
    (
        "glue:UpdateDevEndpoint",
        "can log in to a Glue endpoint running as its role",
    ),
];

/// Actions that escalate together with `iam:PassRole`: they start compute
/// that runs as a role the caller passes.
pub const WITH_PASS_ROLE: &[&str] = &[
    "ec2:RunInstances",
    "lambda:CreateFunction",
    "glue:CreateDevEndpoint",
    "glue:CreateJob",
    "cloudformation:CreateStack",
    "datapipeline:CreatePipeline",
    "ecs:RunTask",
    "ecs:CreateService",
    "sagemaker:CreateNotebookInstance",
    "sagemaker:CreateTrainingJob",
    "sagemaker:CreateProcessingJob",
    "codebuild:CreateProject",
    "codestar:CreateProject",
];

pub const PASS_ROLE: &str = "iam:PassRole";
