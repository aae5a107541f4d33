//! Mail that moto's SES received, parsed (for tests that send mail).
#![allow(dead_code)]

use mail_parser::{MessageParser, MimeHeaders};

use crate::support::Moto;

/// One message as SES received it.
#[derive(Debug)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub raw_headers: String,
    pub attachments: Vec<(String, String)>,
}

pub fn sent(moto: &Moto) -> Vec<Mail> {
    moto.data()["ses"]["RawMessage"]
        .as_array()
        .expect("RawMessage list")
        .iter()
        .map(|m| {
            let raw = m["raw_data"].as_str().unwrap();
            let parsed = MessageParser::default()
                .parse(raw.as_bytes())
                .expect("a MIME message");
            let to = parsed
                .to()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.address().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Mail {
                to,
                subject: parsed.subject().unwrap_or_default().to_owned(),
                html: parsed
                    .body_html(0)
                    .map(|s| s.into_owned())
                    .unwrap_or_default(),
                text: parsed
                    .body_text(0)
                    .map(|s| s.into_owned())
                    .unwrap_or_default(),
                raw_headers: raw.split("\r\n\r\n").next().unwrap_or_default().to_owned(),
                attachments: parsed
                    .attachments()
                    .map(|a| {
                        (
                            a.attachment_name().unwrap_or_default().to_owned(),
                            String::from_utf8_lossy(a.contents()).into_owned(),
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The messages an `--outbox` run wrote into `dir`, as (first recipient,
/// text body), in file order (the digest last).
pub fn outbox(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let raw = std::fs::read(p).unwrap();
            let msg = MessageParser::default().parse(&raw).unwrap();
            (
                msg.to()
                    .and_then(|t| t.first())
                    .and_then(|a| a.address())
                    .unwrap_or("")
                    .to_owned(),
                msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
            )
        })
        .collect()
}
