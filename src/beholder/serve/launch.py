"""`beholder serve` (or any beholder command that serves HTTP, such as `review`) as a child process on a free
loopback port: for tests, benchmarks, or a training script that wants a local scoring service of its own.

    with ServerProcess("./model", "--max-batch", "16") as server:
        client = Client(server.url)
    with BeholderProcess("review", "scores.parquet", "--port", "0") as review:
        ...  # review.url
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


class BeholderProcess:
    def __init__(self, *args: str, env: dict[str, str] | None = None, startup_timeout: float = 120.0):
        """Start `beholder ARGS...` (a command that serves HTTP and prints its URL, given `--port 0`) and wait until
        /readyz answers 200. Its output goes to `self.log` (a file), so a chatty server never blocks on a full pipe."""
        self.name = f"beholder {args[0]}"
        self.log = Path(tempfile.mkstemp(prefix=f"beholder-{args[0]}-", suffix=".log")[1])
        self._announce = self.log.with_suffix(".url")
        self._output: str | None = None  # set when stopped
        command = [sys.executable, "-m", "beholder", *args]
        with open(self._announce, "wb") as stdout, open(self.log, "wb") as stderr:
            self.process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
        try:
            self.url = self._wait_ready(startup_timeout)
        except BaseException:
            self.stop(timeout=10)
            raise

    def _wait_ready(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        url = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")
            announced = self._announce.read_text().split()
            url = url or next((word for word in announced if word.startswith("http://")), None)
            if url and _get_status(url + "/readyz") == 200:
                return url
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} was not ready within {timeout:g} s:\n{self.output()}")

    def output(self) -> str:
        """What the server printed (kept after stop() removes its files)."""
        if self._output is None:
            return self._announce.read_text(errors="replace") + self.log.read_text(errors="replace")
        return self._output

    def terminate(self) -> None:
        """SIGTERM: the server drains (answers what is in flight) and exits."""
        self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait for the drain, and return the exit status (killed if it does not exit in time)."""
        if self.process.poll() is None:
            self.terminate()
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        if self._output is None:
            self._output = self.output()
            for path in (self.log, self._announce):
                path.unlink(missing_ok=True)
        return status

    def __enter__(self) -> BeholderProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess(BeholderProcess):
    def __init__(
        self, model: str | Path, *options: str, env: dict[str, str] | None = None, startup_timeout: float = 120.0
    ):
        """`beholder serve -m MODEL --port 0 OPTIONS...`, ready."""
        super().__init__("serve", "-m", str(model), "--port", "0", *options, env=env, startup_timeout=startup_timeout)


def _get_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None
