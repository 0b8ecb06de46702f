"""The docs site builds strictly, and every page reads in a real browser at 1280 px: headless
Chromium loads it with no console error, nothing is wider than the content column (a table
or a code block wraps inside it, none is cut or scrolls), and diagrams and figures are shown
at a size their text can be read at.

``PROCOBSRV_DOCS_SCREENS=DIR`` keeps a full-page screenshot of every page in DIR.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.devtools import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 1280
#: The smallest text a diagram may be drawn with, once scaled to the column (CSS px).
MIN_DIAGRAM_TEXT_PX = 11
#: A raster figure shown smaller than this share of its size is unreadable (unless it links
#: to itself at full size).
MIN_RASTER_SCALE = 0.9

#: What is cut or hidden in the content column, and every image with its shown size.
MEASURE = """
(() => {
  // The article's column; Material lets table wrappers reach into its padding (negative
  // margins), which is still the column.
  const column = document.querySelector('.md-content') || document.body;
  const right = column.getBoundingClientRect().right + 1;
  const name = (el) => el.tagName.toLowerCase() + (el.className && typeof el.className ===
    'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '') + ' "' +
    (el.textContent || el.getAttribute('src') || '').trim().slice(0, 60) + '"';
  const cut = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth + 1) {
    cut.push(`the page scrolls sideways: ${root.scrollWidth} px wide`);
  }
  for (const el of column.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width > 0 && box.right > right) {
      cut.push(`${name(el)} ends at ${Math.round(box.right)} px, the column at ${right - 1}`);
    }
    const overflow = getComputedStyle(el).overflowX;
    if (overflow !== 'visible' && el.scrollWidth > el.clientWidth + 1) {
      cut.push(`${name(el)} hides ${el.scrollWidth - el.clientWidth} px (overflow ${overflow})`);
    }
  }
  const images = [...column.querySelectorAll('img')].map((img) => ({
    src: img.currentSrc || img.src,
    shown: img.getBoundingClientRect().width,
    natural: img.naturalWidth,
    linked: !!(img.closest('a') && img.closest('a').href === (img.currentSrc || img.src)),
  }));
  return {cut: [...new Set(cut)], images};
})()
"""

_VIEWBOX = re.compile(r'viewBox="[-\d.]+ [-\d.]+ ([\d.]+) [\d.]+"')
_FONT_SIZE = re.compile(r'font-size="([\d.]+)"')


def smallest_text_px(svg: str, shown_width: float) -> float:
    """The smallest font of an SVG once drawn ``shown_width`` CSS px wide."""
    viewbox = _VIEWBOX.search(svg)
    sizes = [float(size) for size in _FONT_SIZE.findall(svg)]
    assert viewbox and sizes, "an SVG without a viewBox or text"
    return min(sizes) * shown_width / float(viewbox.group(1))


def image_problems(images: list[dict[str, Any]], files: Path, base: str) -> list[str]:
    problems = []
    for image in images:
        if not image["src"].startswith(base):
            problems.append(f"{image['src']}: loaded from outside the site")
            continue
        path = files / image["src"][len(base) :]
        if path.suffix == ".svg":
            px = smallest_text_px(path.read_text(), image["shown"])
            if px < MIN_DIAGRAM_TEXT_PX:
                problems.append(f"{path.name}: its smallest text is drawn {px:.1f} px high")
        elif not image["linked"] and image["shown"] < MIN_RASTER_SCALE * image["natural"]:
            problems.append(
                f"{path.name}: shown {image['shown']:.0f} px wide, drawn {image['natural']} px"
            )
    return problems


def check(page: Page, files: Path, base: str) -> list[str]:
    """Everything wrong with the page in ``page``: console errors, cut content, images."""
    measured = page.evaluate(MEASURE)
    return page.errors + measured["cut"] + image_problems(measured["images"], files, base)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stderr[-4000:]
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serving(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on the loopback address (Material's search needs HTTP, not
    file://); its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def site_pages(site: Path) -> list[str]:
    """Every page's path under the site's root ("" for the home page)."""
    pages = [p.parent.relative_to(site).as_posix() for p in site.rglob("index.html")]
    return sorted("" if p == "." else p + "/" for p in pages)


def test_every_page_loads_without_errors_and_fits_the_column_at_1280_px(
    site: Path, tmp_path: Path
) -> None:
    pages = site_pages(site)
    assert len(pages) >= 25, pages  # every nav entry, or the build lost pages
    screens = os.environ.get("PROCOBSRV_DOCS_SCREENS")
    problems = []
    with serving(site) as base, Browser(tmp_path, width=WIDTH) as browser:
        for path in pages:
            page = browser.open(base + path)
            problems += [f"/{path}: {problem}" for problem in check(page, site, base)]
            if screens:
                page.screenshot(
                    Path(screens) / f"{path.strip('/').replace('/', '-') or 'index'}.png"
                )
            page.close()
    assert problems == [], "\n".join(problems)


BAD_PAGE = """<!doctype html><html><head><link rel="icon" href="data:,"></head>
<body><div class="md-content" style="width:600px">
<p>fits</p>
<pre style="overflow:auto"><code>{long}</code></pre>
<table><tr><td style="white-space:nowrap">{long}</td></tr></table>
<img src="tiny.svg" style="width:300px">
<script>console.error("broken on purpose")</script>
</div></body></html>"""
TINY_SVG = """<svg width="600pt" height="40pt" viewBox="0.00 0.00 600.00 40.00"
xmlns="http://www.w3.org/2000/svg"><text x="10" y="20" font-size="10.00">small</text></svg>"""


def test_the_checks_catch_a_console_error_cut_content_and_small_diagram_text(
    tmp_path: Path,
) -> None:
    files = tmp_path / "site"
    files.mkdir()
    (files / "index.html").write_text(BAD_PAGE.format(long="x" * 300))
    (files / "tiny.svg").write_text(TINY_SVG)
    with serving(files) as base, Browser(tmp_path, width=WIDTH) as browser:
        page = browser.open(base)
        problems = check(page, files, base)
        page.close()
    text = "\n".join(problems)
    assert "console.error: broken on purpose" in text, text
    assert re.search(r"^pre .* hides \d+ px \(overflow auto\)", text, re.MULTILINE), text
    assert re.search(r"^td .* ends at \d+ px, the column at \d+", text, re.MULTILINE), text
    assert "tiny.svg: its smallest text is drawn 5.0 px high" in text, text
    assert "fits" not in text, text  # the paragraph that fits is not named


def test_smallest_text_px_scales_the_svgs_own_units() -> None:
    svg = '<svg viewBox="0 0 500.00 100" ><text font-size="10.00"/><text font-size="12.00"/></svg>'
    assert smallest_text_px(svg, 500) == 10
    assert smallest_text_px(svg, 250) == 5
