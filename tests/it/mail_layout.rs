//! What a person sees on a phone: every golden HTML message (owner messages and
//! digests, with and without a ledger) is laid out by a real browser, headless
//! Chromium (Debian package `chromium`, installed by `scripts/test`), in a frame
//! 390 px wide (a phone) and 1200 px wide (a desktop). Nothing may be wider
//! than the frame: no sideways scrolling, no cut-off key ids or addresses.
//!
//! Chromium will not make a window narrower than 500 px, so each message is
//! loaded into an `<iframe>` of the exact width (its own viewport, as in a mail
//! app) and a script inside it reports the document's scroll width and every
//! element whose right edge is past the viewport.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WIDTHS: [u32; 2] = [390, 1200];

/// Reports, into the parent page, the widest thing in this document.
const PROBE: &str = r#"<script>
(function () {
  var w = document.documentElement.clientWidth, bad = [];
  document.querySelectorAll('body *').forEach(function (e) {
    var r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > w + 0.5) {
      bad.push(e.tagName.toLowerCase() + ' ends at ' + Math.round(r.right) + ' px: "' +
        (e.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 70) + '"');
    }
  });
  parent.document.getElementById('r' + frameElement.dataset.n).textContent =
    'viewport=' + w + ' scroll=' + document.documentElement.scrollWidth + ' over=' + bad.length +
    (bad.length ? ' | ' + bad.slice(-8).join(' | ') : '');
})();
</script>"#;

fn chromium() -> String {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return name.to_string();
        }
    }
    panic!(
        "headless Chromium is needed for this test: install it (apt-get install chromium); \
         scripts/test does that when it runs as root"
    );
}

fn attribute_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;")
}

fn golden_messages() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut found = Vec::new();
    for dir in [root.clone(), root.join("ledger")] {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "html"))
            .collect();
        names.sort();
        for path in names {
            let label = path.strip_prefix(&root).unwrap().display().to_string();
            found.push((label, std::fs::read_to_string(&path).unwrap()));
        }
    }
    found
}

/// Lays out every document in a `width` px frame; returns one line per
/// document: `viewport=W scroll=S over=N | offenders...`.
fn lay_out(dir: &Path, documents: &[(String, String)], width: u32) -> Vec<String> {
    let mut page = String::from("<!DOCTYPE html><html><body style=\"margin:0\">\n");
    for (n, (_, html)) in documents.iter().enumerate() {
        let probed = html.replacen("</body>", &format!("{PROBE}</body>"), 1);
        page.push_str(&format!(
            "<pre id=\"r{n}\">not measured</pre><iframe data-n=\"{n}\" style=\"border:0;display:block;width:{width}px;height:30000px\" srcdoc=\"{}\"></iframe>\n",
            attribute_escape(&probed)
        ));
    }
    page.push_str("</body></html>\n");
    let harness = dir.join(format!("harness-{width}.html"));
    std::fs::write(&harness, page).unwrap();
    // The dump goes to a file: it holds every document and would fill a pipe.
    let dump = dir.join(format!("dump-{width}.html"));
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1300,900",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", harness.display()))
        .stdout(std::fs::File::create(&dump).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("chromium did not finish laying out the messages within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let dom = std::fs::read_to_string(&dump).unwrap();
    (0..documents.len())
        .map(|n| {
            let open = format!("<pre id=\"r{n}\">");
            let start = dom.find(&open).expect("result element in the dumped page") + open.len();
            let end = start + dom[start..].find("</pre>").unwrap();
            dom[start..end].to_string()
        })
        .collect()
}

fn fits(line: &str) -> bool {
    let field = |name: &str| -> Option<u32> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
    };
    matches!((field("viewport"), field("scroll"), field("over")),
        (Some(v), Some(s), Some(0)) if s <= v)
}

#[test]
fn every_message_fits_a_phone_and_a_desktop_without_scrolling_sideways() {
    let dir = tempfile::tempdir().unwrap();
    let mut documents = golden_messages();
    assert!(
        documents.iter().any(|(l, _)| l.contains("digest"))
            && documents.iter().any(|(l, _)| l.contains("owner-")),
        "the golden messages include digests and owner messages"
    );
    // A control that is too wide on purpose: proves the measurement sees overflow.
    documents.push((
        "control (800 px wide)".into(),
        "<html><body><div style=\"width:800px\">wide</div></body></html>".into(),
    ));
    let mut problems = Vec::new();
    for width in WIDTHS {
        let results = lay_out(dir.path(), &documents, width);
        for ((label, _), line) in documents.iter().zip(&results) {
            assert!(
                line.starts_with(&format!("viewport={width} ")),
                "{label} at {width} px was not measured in a {width} px viewport: {line}"
            );
            let control = label.starts_with("control");
            match (fits(line), control) {
                (true, false) | (false, true) => {}
                (false, false) => problems.push(format!("{label} at {width} px: {line}")),
                (true, true) if width < 800 => {
                    problems.push(format!("the control was not seen overflowing: {line}"))
                }
                (true, true) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
