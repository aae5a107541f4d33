//! SSM Parameter Store: reads the one SecureString holding the chat webhook
//! URL (`webhook_url_parameter`). The value is a secret: it is returned, never
//! logged, and never part of an error.

use aws_config::SdkConfig;

use super::{classify, AwsError};

/// The SSM action keywarden calls, only when `webhook_url_parameter` is set
/// (the Lambda's role then grants it on that one parameter).
pub const SSM_ACTIONS: &[&str] = &["ssm:GetParameter"];

/// Why the parameter's value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A `String` (or `StringList`) parameter is stored in clear and readable
    /// by anyone with `ssm:GetParameter`: a secret must be a SecureString.
    #[error("SSM parameter {name} is a {found}, not a SecureString: store the webhook URL as a SecureString (aws ssm put-parameter --type SecureString --overwrite ...)")]
    NotSecure { name: String, found: String },
}

/// The decrypted value of the SecureString parameter `name`.
pub async fn secure_string(config: &SdkConfig, name: &str) -> Result<String, ParameterError> {
    let client = aws_sdk_ssm::Client::new(config);
    let out = client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| classify("ssm:GetParameter", e))?;
    let parameter = out.parameter();
    match parameter.and_then(|p| p.r#type()) {
        Some(aws_sdk_ssm::types::ParameterType::SecureString) => {}
        found => {
            return Err(ParameterError::NotSecure {
                name: name.to_owned(),
                found: found.map_or("parameter of no type".to_owned(), |t| t.as_str().to_owned()),
            })
        }
    }
    parameter
        .and_then(|p| p.value())
        .map(str::to_owned)
        .ok_or_else(|| {
            AwsError::new(
                "ssm:GetParameter",
                "EmptyParameter",
                format!("parameter {name} has no value"),
            )
            .into()
        })
}
