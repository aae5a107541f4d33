//! SSM Parameter Store: reads the one SecureString holding the chat webhook
//! URL (`webhook_url_parameter`). The value is a secret: it is returned, never
//! logged, and never part of an error.

use aws_config::SdkConfig;

use super::{classify, AwsError};

/// The SSM action keywarden calls, only when `webhook_url_parameter` is set
/// (the Lambda's role then grants it on that one parameter).
pub const SSM_ACTIONS: &[&str] = &["ssm:GetParameter"];

/// The decrypted value of the parameter `name`.
pub async fn secure_string(config: &SdkConfig, name: &str) -> Result<String, AwsError> {
    let client = aws_sdk_ssm::Client::new(config);
    let out = client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| classify("ssm:GetParameter", e))?;
    out.parameter()
        .and_then(|p| p.value())
        .map(str::to_owned)
        .ok_or_else(|| {
            AwsError::new(
                "ssm:GetParameter",
                "EmptyParameter",
                format!("parameter {name} has no value"),
            )
        })
}
