"""A headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: commands on
fd 3, replies on fd 4, JSON messages ending in NUL), with the standard library only.

``Browser().open(url)`` loads a page and returns what the tests check: console errors and exceptions,
every ``<img>`` with its ``naturalWidth``, and a PNG screenshot.
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

CANDIDATES = ('chromium', 'chromium-browser', 'google-chrome', 'chrome')


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class Browser:
    def __init__(self, exe: str, *, timeout: float = 60.0):
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix='jaxvis-chromium-')
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        args = [exe, '--headless=new', '--remote-debugging-pipe', '--no-sandbox', '--disable-gpu', '--no-first-run',
                '--no-default-browser-check', '--disable-extensions', f'--user-data-dir={self._profile}',
                '--window-size=1100,800', 'about:blank']
        # the browser reads commands on its fd 3 and writes replies on its fd 4: a small Python shim puts the
        # pipe ends there and execs it (no preexec_fn, so no fork of this multithreaded process; dash's
        # redirections take single-digit fds only)
        shim = ('import fcntl, os, sys; r, w = (fcntl.fcntl(int(a), fcntl.F_DUPFD, 10) for a in sys.argv[1:3]); '
                'os.dup2(r, 3); os.dup2(w, 4); os.set_inheritable(3, True); os.set_inheritable(4, True); '
                'os.execv(sys.argv[3], sys.argv[3:])')
        self.proc = subprocess.Popen([sys.executable, '-c', shim, str(to_chrome_r), str(from_chrome_w), *args],
                                     pass_fds=(to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf, self._id, self.events = b'', 0, []

    def _read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b'\0' not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError('no reply from chromium')
            data = os.read(self._r, 1 << 20)
            if not data:
                raise RuntimeError('chromium closed the pipe')
            self._buf += data
        msg, self._buf = self._buf.split(b'\0', 1)
        return json.loads(msg)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        msg = {'id': self._id, 'method': method, 'params': params}
        if session:
            msg['sessionId'] = session
        os.write(self._w, json.dumps(msg).encode() + b'\0')
        while True:
            reply = self._read()
            if reply.get('id') == self._id:
                if 'error' in reply:
                    raise RuntimeError(f'{method}: {reply["error"]}')
                return reply.get('result', {})
            self.events.append(reply)

    def wait_event(self, name: str, session: str) -> dict:
        for i, e in enumerate(self.events):
            if e.get('method') == name and e.get('sessionId') == session:
                return self.events.pop(i)
        while True:
            e = self._read()
            if e.get('method') == name and e.get('sessionId') == session:
                return e
            self.events.append(e)

    def open(self, url: str) -> dict:
        """Load ``url`` in a new tab; returns ``{'errors': [str], 'images': [(src, naturalWidth)],
        'screenshot': PNG bytes, 'title': str}`` (errors: console errors, exceptions, failed loads)."""
        target = self.call('Target.createTarget', url='about:blank')['targetId']
        s = self.call('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
        for domain in ('Page', 'Runtime', 'Log'):
            self.call(f'{domain}.enable', s)
        self.events = [e for e in self.events if e.get('sessionId') != s]  # about:blank's own
        self.call('Page.navigate', s, url=url)
        self.wait_event('Page.loadEventFired', s)
        images = self.evaluate(s, 'Array.from(document.images).map(i => [i.getAttribute("src"), i.naturalWidth])')
        title = self.evaluate(s, 'document.title')
        shot = base64.b64decode(self.call('Page.captureScreenshot', s, format='png')['data'])
        errors = [_error(e) for e in self.events if e.get('sessionId') == s and _error(e)]
        self.call('Target.closeTarget', targetId=target)
        return {'errors': errors, 'images': [tuple(i) for i in images], 'screenshot': shot, 'title': title,
                'session': s}

    def evaluate(self, session: str, expression: str):
        res = self.call('Runtime.evaluate', session, expression=expression, returnByValue=True, awaitPromise=True)
        if 'exceptionDetails' in res:
            raise RuntimeError(f'{expression}: {res["exceptionDetails"].get("text")}')
        return res['result'].get('value')

    def close(self) -> None:
        try:
            self.call('Browser.close')
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._r)
        os.close(self._w)
        shutil.rmtree(self._profile, ignore_errors=True)


def _error(event: dict) -> str | None:
    method, p = event.get('method'), event.get('params', {})
    if method == 'Runtime.exceptionThrown':
        return 'exception: ' + str(p.get('exceptionDetails', {}).get('text'))
    if method == 'Runtime.consoleAPICalled' and p.get('type') == 'error':
        return 'console.error: ' + ' '.join(str(a.get('value')) for a in p.get('args', []))
    if method == 'Log.entryAdded' and p.get('entry', {}).get('level') == 'error':
        return 'log: ' + str(p['entry'].get('text')) + ' ' + str(p['entry'].get('url', ''))
    return None
