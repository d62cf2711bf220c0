"""``python -m devstack.screenshot [OUT.png]``: the weekly_evaluation trigger form, as a user sees it.

Starts the ``make airflow`` stack (login-free for this one shot), opens the DAG page in headless Chromium
(Debian's ``chromium`` package: ``apt-get install -y chromium``), clicks "Trigger" and saves a PNG for the README.
Chromium is driven over the DevTools protocol with ``websockets`` (already installed with Airflow), so no
browser-automation package or downloaded browser build is needed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from devstack.airflow import LiveAirflow, free_port
from devstack.stack import REPO

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--hide-scrollbars", "--window-size=1400,1500"]
DEFAULT_OUT = REPO / "docs" / "trigger-form-weekly-evaluation.png"


async def _capture(ws_url: str, page_url: str, out: Path) -> None:
    import websockets

    async with websockets.connect(ws_url, max_size=64 * 1024 * 1024) as ws:
        counter = 0

        async def call(method: str, **params: object) -> dict:
            nonlocal counter
            counter += 1
            await ws.send(json.dumps({"id": counter, "method": method, "params": params}))
            while True:
                message = json.loads(await ws.recv())
                if message.get("id") == counter:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message.get("result", {})

        async def evaluate(expression: str) -> object:
            result = await call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
            return result.get("result", {}).get("value")

        await call("Page.enable")
        await call("Page.navigate", url=page_url)
        button = "document.querySelector('[data-testid=\"trigger-dag-button\"]')"
        for _ in range(120):  # the single-page app renders after its API calls
            if await evaluate(f"!!{button} && !{button}.disabled"):
                break
            await asyncio.sleep(0.5)
        else:
            raise RuntimeError(f"no enabled Trigger button on {page_url}")
        await evaluate(f"{button}.click()")
        for _ in range(60):
            if await evaluate("!!document.querySelector('[role=\"dialog\"]')"):
                break
            await asyncio.sleep(0.5)
        # Expand the collapsed "run parameters" sections so the Params form itself is in the picture.
        await evaluate("""[...document.querySelectorAll('[role="dialog"] button[aria-expanded="false"]')]
                          .forEach(b => b.click())""")
        await asyncio.sleep(2)
        shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        out.write_bytes(base64.b64decode(shot["data"]))


def capture(live: LiveAirflow, out: Path, dag_id: str = "weekly_evaluation") -> Path:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("Chromium not found: apt-get install -y chromium (Debian/Ubuntu)")
    port = free_port()
    profile = tempfile.mkdtemp(prefix="tailor-chromium-")
    browser = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--remote-debugging-port={port}",
                                f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2).read())
                page = next(t for t in targets if t.get("type") == "page")
                break
            except (OSError, StopIteration):
                if time.monotonic() > deadline:
                    raise RuntimeError("Chromium's DevTools endpoint did not come up within 30 s") from None
                time.sleep(0.3)
        out.parent.mkdir(parents=True, exist_ok=True)
        asyncio.run(_capture(page["webSocketDebuggerUrl"], f"{live.url}/dags/{dag_id}", out))
        return out
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    live = LiveAirflow(home=Path(tempfile.mkdtemp(prefix="tailor-screenshot-")),
                       extra_env={"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"})
    with live:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            dags = {d["dag_id"] for d in live.request("GET", "/api/v2/dags?limit=100")["dags"]}
            if "weekly_evaluation" in dags:
                break
            time.sleep(2)
        print(f"wrote {capture(live, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
