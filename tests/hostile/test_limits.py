"""Issue 19, part 4: a sweep states its number of points and refuses more than a limit, before anything runs."""

from __future__ import annotations

import time

import pytest

from spikebridge import cli
from spikebridge.errors import ValidationError
from spikebridge.run.sweep import count_points, load_sweep, sweep_points

HUGE = """
[experiment]
name = "huge"
[model]
path = "shipped:digits_mlp"
[simulation]
target = "numpy"
[sweep]
conversion.percentile = [{pct}]
simulation.n_steps = [{steps}]
"""


def _toml(tmp_path, n_pct: int, n_steps: int):
    path = tmp_path / "sweep.toml"
    path.write_text(HUGE.format(pct=", ".join(str(90 + k * 1e-4) for k in range(n_pct)),
                                steps=", ".join(str(k + 1) for k in range(n_steps))))
    return path


def test_a_million_point_sweep_is_refused_in_one_line_before_anything(tmp_path, capsys):
    path = _toml(tmp_path, 1000, 1000)
    out = tmp_path / "out"
    t0 = time.perf_counter()
    assert cli.main(["run", str(path), "--out", str(out)]) == 1
    assert time.perf_counter() - t0 < 20  # today: builds 10^6 experiments, then runs them for hours
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["spikebridge: error: sweep: 1000000 points (1000 conversion.percentile x 1000 simulation.n_steps) is "
                   "more than the limit of 1000; sweep fewer values or allow it with --max-points 1000000 "
                   "(max_points=1000000)"]
    assert not out.exists()


def test_the_limit_is_overridable_and_the_count_is_stated(tmp_path):
    from spikebridge.run.experiment import demo_spec

    sweep = load_sweep(_toml(tmp_path, 3, 4))
    assert count_points(sweep) == 12
    with pytest.raises(ValidationError, match="12 points .* more than the limit of 10"):
        count_points(sweep, 10)
    assert count_points(sweep, None) == 12
    spec = demo_spec("digits_mlp", quick=True)
    assert len(sweep_points(spec, sweep, max_points=12)) == 12
    with pytest.raises(ValidationError):
        sweep_points(spec, sweep, max_points=11)


# ------------------------------------------------------------------------------------ downloads (part 4)

import gzip  # noqa: E402
import http.server  # noqa: E402
import threading  # noqa: E402

import spikebridge.datasets.mnist as mn  # noqa: E402
from spikebridge.datasets import fetch_mnist  # noqa: E402
from spikebridge.errors import DownloadError  # noqa: E402
from tests.test_datasets_mnist import _serve, server, tiny_registry, tiny_sets  # noqa: E402,F401


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Serves every path as a 'gzip' file of 10^6 bytes, one byte every 50 ms (a 20 byte/s server)."""

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", str(10**6))
        self.end_headers()
        try:
            for _ in range(10**6):
                self.wfile.write(b"\x1f")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass  # the client gave up

    def log_message(self, *args):
        pass


class _Endless(_Trickle):
    """Sends zeros as fast as it can, declaring no length."""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.end_headers()
        block = bytes(1 << 16)
        try:
            while True:
                self.wfile.write(block)
        except OSError:
            pass


def _start(handler):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


def test_a_trickling_server_cannot_hang_fetch_past_its_deadline(tmp_path, tiny_registry):
    httpd, url = _start(_Trickle)
    try:
        t0 = time.monotonic()
        with pytest.raises(DownloadError, match=r"not finished by the deadline \(\d+ bytes received\)"):
            fetch_mnist("test", data_home=tmp_path, urls=[url], timeout=30, deadline=1.5)
        # each byte arrives well within the 30 s read timeout: only the overall deadline can stop it
        assert time.monotonic() - t0 < 4.0
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert [p.name for p in (tmp_path / "mnist").iterdir()] == []  # no .part left behind


def test_downloads_and_their_content_are_capped(tmp_path, tiny_registry, server, monkeypatch):
    httpd, url = _start(_Endless)
    monkeypatch.setattr(mn, "MAX_DOWNLOAD_BYTES", 1 << 20)
    try:
        with pytest.raises(DownloadError, match="more than the 1 MB cap; refused"):
            fetch_mnist("test", data_home=tmp_path, urls=[url], deadline=30)
    finally:
        httpd.shutdown()
        httpd.server_close()
    # a small gzip that expands past the content cap: refused while hashing, never decompressed whole
    monkeypatch.setattr(mn, "MAX_IDX_BYTES", 1 << 20)
    base, folder = server
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / f"{name}.gz").write_bytes(gzip.compress(bytes(50 << 20), 9))  # 50 MB from ~50 KB
    with pytest.raises(DownloadError, match=r"SHA-256 of the content is \(more than 1 MB of content"):
        fetch_mnist("test", data_home=tmp_path, urls=[base])
    assert [p.name for p in (tmp_path / "mnist").iterdir()] == []


def test_a_cached_file_is_kept_until_its_replacement_is_verified(tmp_path, server, tiny_sets, tiny_registry):
    base, folder = server
    raw, _ = tiny_sets
    cached = tmp_path / "mnist" / "t10k-labels-idx1-ubyte"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a user's stale copy")
    # the mirror is down: the download fails, and the user's file is still there, untouched
    with pytest.raises(DownloadError, match=r"could not download t10k-images-idx3-ubyte: .*404"):
        fetch_mnist("test", data_home=tmp_path, urls=[base])
    assert cached.read_bytes() == b"a user's stale copy"
    # the images come, the labels' download is corrupt: still untouched
    _serve(folder, {"t10k-images-idx3-ubyte": raw["t10k-images-idx3-ubyte"], "t10k-labels-idx1-ubyte": b"junk"})
    with pytest.raises(DownloadError, match="could not download t10k-labels-idx1-ubyte: .*corrupt download refused"):
        fetch_mnist("test", data_home=tmp_path, urls=[base], deadline=30)
    assert cached.read_bytes() == b"a user's stale copy"
    # a good mirror: replaced only now, by the verified .gz
    _serve(folder, raw)
    fetch_mnist("test", data_home=tmp_path, urls=[base])
    assert not cached.exists() and (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


def test_unreachable_mirror_gives_words_not_errno(tmp_path, tiny_registry):
    with pytest.raises(DownloadError) as info:
        fetch_mnist("test", data_home=tmp_path, timeout=5)
    assert "[Errno" not in str(info.value) and "Connection refused" in str(info.value)
