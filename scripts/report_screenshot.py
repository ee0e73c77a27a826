"""Screenshot of a report's first top hit with its 3D view and score explanation opened (for README).

    python scripts/report_screenshot.py results/demo/report.html docs/report_top_hit_3d.png

Opens the page in headless Chromium (software WebGL), opens the first hit's "3D pose" and
"why this score" rows, waits for the viewer, and saves the hit's table row as a PNG.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from chromium import WEBGL_ARGS, HeadlessPage, find_chromium  # noqa: E402

FIRST_ROW = "#top-hits tbody tr"


def main(report: Path, out: Path) -> None:
    """Write the PNG of the first top hit's row of ``report`` to ``out``."""
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no chromium on PATH")
    with HeadlessPage(chromium, width=2900, height=1300, extra_args=WEBGL_ARGS) as page:
        page.load(report.resolve().as_uri())
        page.evaluate(
            f"(() => {{ const row = document.querySelector('{FIRST_ROW}');"
            " row.querySelectorAll('details').forEach(d => { d.open = true; });"
            # the page caps its width and scrolls the table sideways: unfold it for the picture
            " document.querySelector('main').style.maxWidth = 'none';"
            " document.querySelectorAll('div.scroll').forEach(d => { d.style.overflow = 'visible'; });"
            " row.scrollIntoView(); })()"
        )
        for _ in range(100):  # the viewer builds its scene asynchronously
            state = page.evaluate(f"document.querySelector('{FIRST_ROW} details.pose3d').dataset.state || ''")
            if state and state != "loading":
                break
            time.sleep(0.2)
        time.sleep(1.0)  # let the compositor present the frame
        box = page.evaluate(
            f"(() => {{ const r = document.querySelector('{FIRST_ROW}').getBoundingClientRect();"
            " return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}; })()"
        )
        out.write_bytes(page.screenshot_png(box))
        print(f"{out}: {box['width']:.0f} x {box['height']:.0f} px, viewer {state}, errors {page.console_errors}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
