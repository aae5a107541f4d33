"""Screenshots of what people receive, for README: an owner message and the
security digest from the demo's outbox, at desktop (1200 px) and phone (390 px)
width, laid out by headless Chromium. Run scripts/demo first; scripts/screenshots
runs this.

Each page is measured first (its full height at that width), then captured at
exactly that size, so nothing is cut off and there is no blank tail.
"""

import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

WIDTHS = {"desktop": 1200, "phone": 390}
# Chromium will not make a window narrower than 500 px, so the height is
# measured inside an iframe of the exact width (as tests/it/mail_layout.rs does).
PROBE = (
    "<script>parent.document.body.setAttribute('data-height',"
    " document.documentElement.scrollHeight);</script></body>"
)


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("headless Chromium is needed: apt-get install chromium")


def run(args, profile):
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={profile}"]
    return subprocess.run(base + args, check=True, capture_output=True, text=True, timeout=120)


def shoot(html, width, target, work):
    probed = html.read_text().replace("</body>", PROBE, 1)
    harness = work / "probe.html"
    harness.write_text(
        f'<!DOCTYPE html><html><body><iframe style="border:0;width:{width}px;height:10px" '
        f'srcdoc="{probed.replace("&", "&amp;").replace(chr(34), "&quot;")}"></iframe></body></html>')
    dom = run(["--window-size=1300,800", "--dump-dom", harness.as_uri()], work / "profile").stdout
    found = re.search(r'data-height="(\d+)"', dom)
    if not found:
        sys.exit(f"could not measure {html}")
    height = int(found.group(1))
    run([f"--window-size={width},{height}", f"--screenshot={target}", html.resolve().as_uri()],
        work / "profile")
    print(f"{target}: {width}x{height} from {html}")


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    outbox, day3 = root / "demo-output/outbox", root / "demo-output/outbox-day3"
    if not day3.is_dir():
        sys.exit("no demo outbox: run scripts/demo first")
    # The owner with the most keys to fix on day 0 shows every part of a message.
    owners = sorted(outbox.glob("*-owner-*.html"),
                    key=lambda p: (-p.read_text().count("Open in the AWS console"), p.name))
    digests = sorted(day3.glob("*digest*.html"))
    if not owners or not digests:
        sys.exit("the demo outbox has no owner message or no digest")
    docs = root / "docs"
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        for name, html in (("owner", owners[0]), ("digest", digests[-1])):
            for label, width in WIDTHS.items():
                shoot(html, width, docs / f"screenshot-{name}-{label}.png", work)


if __name__ == "__main__":
    main()
