//! The outbox transport: each message as `NNN-owner-<address>.eml` or
//! `NNN-digest.eml`, with an `.html` preview of its HTML part beside it.

use std::path::{Path, PathBuf};

use super::{Delivered, Message};
use crate::core::report::{DeliveryOutcome, MessageKind};

#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn send(&self, message: &Message) -> Result<Delivered, String> {
        let raw = message.mime()?;
        let n = message.seq;
        let stem = match message.kind {
            MessageKind::Owner => format!(
                "{n:03}-owner-{}",
                file_safe(message.to.first().map_or("", |a| a.as_str()))
            ),
            MessageKind::Digest => format!("{n:03}-digest"),
            MessageKind::Chat => format!("{n:03}-chat"),
            MessageKind::SecurityHub => format!("{n:03}-securityhub"),
        };
        let path = write(&self.dir, &stem, &raw, &message.html)?;
        Ok(Delivered {
            outcome: DeliveryOutcome::Outbox,
            message_id: None,
            file: Some(path.display().to_string()),
        })
    }
}

/// Writes the chat payload a webhook would have received as
/// `000-chat-<format>.json` (it goes out before the mail).
pub fn write_chat(dir: &Path, format: &str, body: &serde_json::Value) -> Result<PathBuf, String> {
    let path = dir.join(format!("000-chat-{format}.json"));
    let text = serde_json::to_string_pretty(body).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n")
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// The longest address part of a file name: a file name may have 255
/// bytes on common file systems and an address 254 characters; the message's
/// number before it keeps the names unique.
const MAX_ADDRESS_IN_NAME: usize = 120;

fn file_safe(s: &str) -> String {
    s.chars()
        .take(MAX_ADDRESS_IN_NAME)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write(dir: &Path, stem: &str, raw: &[u8], html: &str) -> Result<PathBuf, String> {
    let eml = dir.join(format!("{stem}.eml"));
    std::fs::write(&eml, raw).map_err(|e| format!("cannot write {}: {e}", eml.display()))?;
    let preview = dir.join(format!("{stem}.html"));
    std::fs::write(&preview, html)
        .map_err(|e| format!("cannot write {}: {e}", preview.display()))?;
    Ok(eml)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22 item 18: a 253-character address made "File name too long".
    #[test]
    fn file_names_stay_short_for_the_longest_addresses() {
        let address = format!("{}@{}.example.com", "a".repeat(64), "b".repeat(176));
        let name = format!("999-owner-{}.html", file_safe(&address));
        assert!(name.len() <= 255, "{} bytes", name.len());
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &format!("999-owner-{}", file_safe(&address)),
            b"x",
            "x",
        )
        .unwrap();
    }
}
