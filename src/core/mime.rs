//! Raw MIME messages (multipart/alternative text + HTML, optional
//! attachment) built with mail-builder. Addresses are validated
//! [`EmailAddress`]es and the subject is one line, so no header can be
//! injected; the date and Message-ID are arguments, so output is repeatable.

use jiff::Timestamp;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use mail_builder::MessageBuilder;

use super::model::EmailAddress;

/// A file attached to a message.
#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    pub content_type: &'a str,
    pub file_name: &'a str,
    pub content: &'a [u8],
}

/// Everything a message needs.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub from: &'a EmailAddress,
    pub to: &'a [EmailAddress],
    pub reply_to: &'a [EmailAddress],
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
    pub attachment: Option<Attachment<'a>>,
    pub date: Timestamp,
    /// Without angle brackets, e.g. `1764374400.abc@keywarden`.
    pub message_id: String,
}

fn addresses(list: &[EmailAddress]) -> Address<'_> {
    Address::new_list(
        list.iter()
            .map(|a| Address::new_address(None::<&str>, a.as_str()))
            .collect(),
    )
}

/// Builds the raw RFC 5322 message. The subject is folded to one line here
/// too, whatever the caller did: a line break in it would start a header.
pub fn build(e: &Envelope<'_>) -> std::io::Result<Vec<u8>> {
    let subject: String = e
        .subject
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let mut m = MessageBuilder::new()
        .from(("keywarden", e.from.as_str()))
        .to(addresses(e.to))
        .subject(subject)
        .date(e.date.as_second())
        .message_id(e.message_id.clone())
        // RFC 3834: automated mail; out-of-office replies should not answer it.
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .text_body(e.text)
        .html_body(e.html);
    if !e.reply_to.is_empty() {
        m = m.reply_to(addresses(e.reply_to));
    }
    if let Some(a) = &e.attachment {
        m = m.attachment(a.content_type, a.file_name, a.content);
    }
    m.write_to_vec().map(unfoldable)
}

/// mail-builder folds a long header before a space as CRLF, TAB, space;
/// unfolding (dropping the CRLF) would leave a tab in the subject. Fold as
/// CRLF, space instead: unfolding then gives the value back exactly.
fn unfoldable(raw: Vec<u8>) -> Vec<u8> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return raw;
    };
    let (head, body) = raw.split_at(end);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < head.len() {
        if head[i..].starts_with(b"\r\n\t ") {
            out.extend_from_slice(b"\r\n ");
            i += 4;
        } else {
            out.push(head[i]);
            i += 1;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A stable Message-ID for a message of a run.
pub fn message_id(date: Timestamp, kind: &str, recipients: &[EmailAddress]) -> String {
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in recipients
        .iter()
        .flat_map(|r| r.as_str().bytes().chain([b',']))
        .chain(kind.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}.{kind}.{h:016x}@keywarden", date.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_both_parts_the_attachment_and_no_injected_headers() {
        let from = EmailAddress::parse("keywarden@example.com").unwrap();
        let to = [EmailAddress::parse("dev@example.com").unwrap()];
        let csv = b"check,user\nkey-unused,ci\n";
        let raw = build(&Envelope {
            from: &from,
            to: &to,
            reply_to: &[EmailAddress::parse("sec@example.com").unwrap()],
            subject: "Action required: 1 key\r\nBcc: evil@example.com",
            text: "plain body",
            html: "<p>html body</p>",
            attachment: Some(Attachment {
                content_type: "text/csv",
                file_name: "findings.csv",
                content: csv,
            }),
            date: "2026-11-29T00:00:00Z".parse().unwrap(),
            message_id: message_id("2026-11-29T00:00:00Z".parse().unwrap(), "owner", &to),
        })
        .unwrap();
        let text = String::from_utf8(raw).unwrap();
        for needle in [
            "From: \"keywarden\" <keywarden@example.com>",
            "To: <dev@example.com>",
            "Reply-To: <sec@example.com>",
            "Auto-Submitted: auto-generated",
            "multipart/alternative",
            "text/plain",
            "text/html",
            "findings.csv",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
        }
        let headers = text.split("\r\n\r\n").next().unwrap();
        assert!(
            !headers
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc")),
            "a header was injected through the subject:\n{headers}"
        );
        assert!(headers.contains("Subject: "), "{headers}");
    }

    #[test]
    fn long_subjects_unfold_to_exactly_the_subject_no_tab() {
        let from = EmailAddress::parse("keywarden@example.com").unwrap();
        let to = [EmailAddress::parse("dev@example.com").unwrap()];
        // The demo's digest subject: long enough to be folded, plain enough not to be encoded.
        let subject =
            "keywarden digest (INCOMPLETE): 40 findings in 5 of 6 accounts, 1 not scanned";
        let raw = build(&Envelope {
            from: &from,
            to: &to,
            reply_to: &[],
            subject,
            text: "t",
            html: "<p>h</p>",
            attachment: None,
            date: "2026-11-29T00:00:00Z".parse().unwrap(),
            message_id: "1.x@keywarden".into(),
        })
        .unwrap();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.subject(), Some(subject));
        // Unfolded as RFC 5322 says (drop each CRLF), the value is the subject.
        let text = String::from_utf8(raw).unwrap();
        let start = text.find("Subject: ").unwrap() + "Subject: ".len();
        let end = start + text[start..].find("\r\nDate:").unwrap();
        let unfolded = text[start..end].replace("\r\n", "");
        assert_eq!(unfolded, subject, "{:?}", &text[start..end]);
    }

    #[test]
    fn message_ids_are_stable_and_distinct_per_recipient() {
        let t: Timestamp = "2026-11-29T00:00:00Z".parse().unwrap();
        let a = [EmailAddress::parse("a@example.com").unwrap()];
        let b = [EmailAddress::parse("b@example.com").unwrap()];
        assert_eq!(message_id(t, "owner", &a), message_id(t, "owner", &a));
        assert_ne!(message_id(t, "owner", &a), message_id(t, "owner", &b));
    }
}
