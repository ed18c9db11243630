#!/usr/bin/env python3
"""Watches a live page in a real headless Chromium, through the DevTools
protocol over a pipe (standard library only): opens URL, then every
INTERVAL seconds for SECONDS evaluates EXPRESSION in the page, and prints
one JSON object: the samples, the console messages and uncaught
exceptions, and the page's final HTML.

Usage: watch_page.py URL SECONDS EXPRESSION [INTERVAL]
Chromium is $CHROMIUM, else `chromium` on PATH.
"""

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time


def main():
    url, seconds, expression = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.25
    browser = os.environ.get("CHROMIUM") or shutil.which("chromium") or "chromium"
    profile = tempfile.mkdtemp(prefix="leadflow-chromium-")
    # Chromium reads commands on fd 3 and writes answers on fd 4.
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()

    def pipes():
        os.dup2(to_chrome_r, 3)
        os.dup2(from_chrome_w, 4)

    chrome = subprocess.Popen(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
        # 3 and 4 too: kept open after `pipes` made them.
        pass_fds=(3, 4, to_chrome_r, from_chrome_w), preexec_fn=pipes,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    buffer = b""
    events = []
    next_id = [0]

    def send(method, params=None, session=None):
        next_id[0] += 1
        message = {"id": next_id[0], "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(to_chrome_w, json.dumps(message).encode() + b"\0")
        return next_id[0]

    def read(timeout):
        nonlocal buffer
        ready, _, _ = select.select([from_chrome_r], [], [], timeout)
        if ready:
            chunk = os.read(from_chrome_r, 1 << 20)
            if not chunk:
                raise SystemExit("chromium closed the pipe")
            buffer += chunk
        messages = []
        while b"\0" in buffer:
            raw, buffer = buffer.split(b"\0", 1)
            messages.append(json.loads(raw))
        return messages

    def call(method, params=None, session=None, timeout=30):
        want = send(method, params, session)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in read(0.1):
                if message.get("id") == want:
                    if "error" in message:
                        raise SystemExit(f"{method}: {message['error']}")
                    return message.get("result", {})
                events.append(message)
        raise SystemExit(f"{method}: no answer from chromium")

    try:
        target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        call("Runtime.enable", session=session)
        call("Log.enable", session=session)
        call("Page.enable", session=session)
        call("Page.navigate", {"url": url}, session=session)
        samples = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(interval)
            result = call("Runtime.evaluate",
                          {"expression": expression, "returnByValue": True}, session=session)
            samples.append(result.get("result", {}).get("value"))
        html = call("Runtime.evaluate",
                    {"expression": "document.documentElement.outerHTML", "returnByValue": True},
                    session=session)["result"]["value"]
        events.extend(read(0.2))
        console = [
            {"type": e["params"]["type"],
             "text": " ".join(str(a.get("value", a.get("description", ""))) for a in e["params"]["args"])}
            for e in events if e.get("method") == "Runtime.consoleAPICalled"
        ]
        console += [
            {"type": e["params"]["entry"]["level"], "text": e["params"]["entry"]["text"]}
            for e in events if e.get("method") == "Log.entryAdded"
        ]
        exceptions = [
            e["params"]["exceptionDetails"].get("text", "")
            + " " + str(e["params"]["exceptionDetails"].get("exception", {}).get("description", ""))
            for e in events if e.get("method") == "Runtime.exceptionThrown"
        ]
        print(json.dumps({"samples": samples, "console": console,
                          "exceptions": exceptions, "html": html}))
        try:
            send("Browser.close")
        except OSError:
            pass
    finally:
        try:
            chrome.wait(timeout=10)
        except subprocess.TimeoutExpired:
            chrome.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
