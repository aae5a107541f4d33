//! The chat webhook's URL, a secret: parsed once here, never shown by
//! `Debug` or in an error. Settings hold it; the webhook transport posts to it.

use crate::core::summary::ChatFormat;

/// A webhook URL: a secret. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookUrl(<secret>)")
    }
}

impl WebhookUrl {
    /// The URL itself, for the transport that posts to it (and redacts it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Accepts `https://host/...`, or `http://` to a loopback address. The
    /// error never repeats the value.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        let uri: hyper::Uri = value
            .parse()
            .map_err(|_| "is not a URL (the value is secret and not shown)".to_owned())?;
        let host = uri.host().unwrap_or_default();
        match uri.scheme_str() {
            Some("https") if !host.is_empty() => Ok(Self(value.to_owned())),
            Some("http") if matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") => {
                Ok(Self(value.to_owned()))
            }
            Some("http") => Err(
                "must be an https:// URL (plain http is allowed to this machine's loopback only)"
                    .to_owned(),
            ),
            _ => Err("must be an https:// URL".to_owned()),
        }
    }

    /// Every part of the URL that is secret, longest first: the whole URL,
    /// the path with its query, each path segment and each query value. A
    /// response that echoes any of them (`Cannot POST /services/T0/B0/SECRET`)
    /// is redacted before it is logged or stored.
    pub fn secret_parts(&self) -> Vec<String> {
        let mut parts = vec![self.0.clone()];
        if let Ok(uri) = self.0.parse::<hyper::Uri>() {
            if let Some(pq) = uri.path_and_query() {
                parts.push(pq.as_str().to_owned());
                parts.push(pq.path().to_owned());
                parts.extend(pq.path().split('/').map(str::to_owned));
                for pair in pq.query().unwrap_or_default().split('&') {
                    parts.push(pair.to_owned());
                    parts.extend(pair.split_once('=').map(|(_, v)| v.to_owned()));
                }
            }
        }
        // Very short pieces ("v1", "/") say nothing and would mangle the text.
        parts.retain(|p| p.len() >= 4);
        parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
        parts.dedup();
        parts
    }

    /// The host, to pick a format when none is set (never logged either).
    fn host(&self) -> String {
        self.0
            .parse::<hyper::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_ascii_lowercase))
            .unwrap_or_default()
    }

    /// The payload format a URL of this host expects: Slack's incoming
    /// webhooks, Teams' (Power Automate) Workflows, anything else JSON.
    pub fn inferred_format(&self) -> ChatFormat {
        let host = self.host();
        if host == "hooks.slack.com" || host.ends_with(".slack.com") {
            ChatFormat::Slack
        } else if host.ends_with(".logic.azure.com")
            || host.ends_with(".webhook.office.com")
            || host.ends_with(".powerplatform.com")
            || host.ends_with(".powerautomate.com")
        {
            ChatFormat::Teams
        } else {
            ChatFormat::Json
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_urls_are_accepted_and_none_is_ever_shown() {
        let secret = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";
        let url = WebhookUrl::parse(secret).unwrap();
        assert_eq!(format!("{url:?}"), "WebhookUrl(<secret>)");
        assert_eq!(url.inferred_format(), ChatFormat::Slack);
        assert!(WebhookUrl::parse("http://127.0.0.1:8080/hook").is_ok());
        for bad in [
            "http://example.com/hook?token=SECRET",
            "ftp://example.com/SECRET",
            "not a url SECRET",
            "",
        ] {
            let e = WebhookUrl::parse(bad).unwrap_err();
            assert!(!e.contains("SECRET") && !e.contains("example.com"), "{e}");
        }
    }

    /// Issue 22 item 12: an endpoint that echoed the path leaked the secret.
    #[test]
    fn every_part_of_the_path_and_query_is_a_secret() {
        let url = WebhookUrl::parse(
            "https://hooks.example.com/services/T0AB/B0CD/XXXXSECRET?sig=SIGSECRET&v=1",
        )
        .unwrap();
        let parts = url.secret_parts();
        for part in [
            "/services/T0AB/B0CD/XXXXSECRET",
            "XXXXSECRET",
            "T0AB",
            "SIGSECRET",
            "sig=SIGSECRET",
        ] {
            assert!(parts.iter().any(|p| p == part), "{part} not in {parts:?}");
        }
        assert!(
            parts.windows(2).all(|w| w[0].len() >= w[1].len()),
            "longest first"
        );
    }

    #[test]
    fn the_format_follows_the_host_when_not_set() {
        for (url, format) in [
            (
                "https://prod-12.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=x",
                ChatFormat::Teams,
            ),
            ("https://acme.webhook.office.com/webhookb2/x", ChatFormat::Teams),
            ("https://siem.example.com/ingest", ChatFormat::Json),
        ] {
            assert_eq!(WebhookUrl::parse(url).unwrap().inferred_format(), format, "{url}");
        }
    }
}
