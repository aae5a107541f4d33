//! S3: the ledger and the report archive when `state` is `s3://…`. Writes of
//! the ledger are conditional (`If-Match` on the ETag read, `If-None-Match: *`
//! for the first save), so two runs can never silently overwrite each other.

use aws_config::SdkConfig;
use aws_smithy_types::byte_stream::ByteStream;

use super::{classify, AwsError};

/// S3 actions on the state bucket (the Lambda's role grants these, on the
/// state prefix only). ListBucket lets a missing ledger read as "not found"
/// instead of AccessDenied; DeleteObject releases a run's lease.
pub const S3_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:ListBucket",
    // `keywarden doctor` only, on the bucket: is it versioned, how encrypted.
    "s3:GetBucketVersioning",
    "s3:GetEncryptionConfiguration",
];

/// S3 calls on one bucket.
#[derive(Debug, Clone)]
pub struct S3 {
    client: aws_sdk_s3::Client,
}

/// What a conditional write expects to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No object yet (`If-None-Match: *`).
    Absent,
    /// The object with this ETag (`If-Match`).
    ETag(String),
}

/// A failed conditional write, told apart from other failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutError {
    /// Someone else wrote the object since it was read.
    Conflict(AwsError),
    Other(AwsError),
}

impl S3 {
    pub fn new(config: &SdkConfig) -> Self {
        // A custom endpoint (moto, MinIO, a VPC endpoint URL) has no
        // per-bucket host names: address buckets by path there.
        let conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(conf),
        }
    }

    /// The object's bytes and ETag, or `None` when there is no such object.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, String)>, AwsError> {
        let op = "s3:GetObject";
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_owned();
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| AwsError::new(op, "InvalidResponse", e.to_string()))?
                    .into_bytes()
                    .to_vec();
                Ok(Some((bytes, etag)))
            }
            Err(e) => {
                let e = classify(op, e);
                if e.code == "NoSuchKey" {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Every key under `prefix`, in key order.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, AwsError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("s3:ListObjectsV2", e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys.sort();
        Ok(keys)
    }

    /// Writes the object only if it is as expected; returns the new ETag.
    pub async fn put_if(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        expect: &Expect,
    ) -> Result<String, PutError> {
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes));
        req = match expect {
            Expect::Absent => req.if_none_match("*"),
            Expect::ETag(etag) => req.if_match(etag),
        };
        match req.send().await {
            Ok(out) => Ok(out.e_tag().unwrap_or_default().to_owned()),
            Err(e) => {
                let e = classify("s3:PutObject", e);
                if matches!(
                    e.code.as_str(),
                    "PreconditionFailed" | "ConditionalRequestConflict" | "412" | "409"
                ) {
                    Err(PutError::Conflict(e))
                } else {
                    Err(PutError::Other(e))
                }
            }
        }
    }

    /// The bucket's versioning status (`Enabled`, `Suspended`), `None` when
    /// it was never turned on.
    pub async fn versioning(&self, bucket: &str) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| classify("s3:GetBucketVersioning", e))?;
        Ok(out.status().map(|s| s.as_str().to_owned()))
    }

    /// The bucket's default encryption (`AES256`, `aws:kms`, …), `None`
    /// when the bucket has no encryption configuration.
    pub async fn encryption(&self, bucket: &str) -> Result<Option<String>, AwsError> {
        match self
            .client
            .get_bucket_encryption()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .server_side_encryption_configuration()
                .and_then(|c| c.rules().first())
                .and_then(|r| r.apply_server_side_encryption_by_default())
                .map(|d| d.sse_algorithm().as_str().to_owned())),
            Err(e) => {
                let e = classify("s3:GetEncryptionConfiguration", e);
                if e.code == "ServerSideEncryptionConfigurationNotFoundError" {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Deletes the object (a run's lease when it ends).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), AwsError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("s3:DeleteObject", e))
    }
}
