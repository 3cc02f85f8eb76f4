"""The real download code against a file served from 127.0.0.1 (no network needed)."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from laser.errors import ArtifactError, ConfigError, NotFoundError
from laser.hub.download import Remote, cache_dir, fetch

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """/w.bin serves PAYLOAD (honouring Range); /cut/w.bin cuts the first answer mid-body."""

    ranges: list[str | None]
    cuts_left: list[int]

    def do_GET(self) -> None:
        self.ranges.append(self.headers.get("Range"))
        if not self.path.endswith("w.bin"):
            self.send_error(404, "Not Found")
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.end_headers()
        if self.path.startswith("/cut/") and self.cuts_left[0] > 0:
            self.cuts_left[0] -= 1
            self.wfile.write(body[: len(body) // 3])  # then drop the connection mid-body
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.delenv("LASER_OFFLINE", raising=False)
    handler = type("H", (Handler,), {"ranges": [], "cuts_left": [1]})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_good_file_is_downloaded_verified_and_reused(server, tmp_path):
    base, handler = server
    remote = Remote(f"{base}/w.bin", sha256=DIGEST[:8])
    path = fetch(remote, cache=tmp_path, progress=False)
    assert path == tmp_path / "w.bin" and path.read_bytes() == PAYLOAD
    assert (tmp_path / "w.bin.sha256").read_text().strip() == DIGEST  # full digest recorded
    assert fetch(remote, cache=tmp_path, progress=False) == path
    assert len(handler.ranges) == 1  # the second call used the cache


def test_wrong_checksum_is_refused_and_leaves_no_file(server, tmp_path):
    base, _ = server
    with pytest.raises(ArtifactError, match="sha256 of .* expected sha256 prefix 00000000"):
        fetch(Remote(f"{base}/w.bin", sha256="00000000"), cache=tmp_path, progress=False)
    assert not (tmp_path / "w.bin").exists() and not (tmp_path / "w.bin.part").exists()


def test_interrupted_transfer_keeps_the_part_file_and_the_next_call_resumes_it(server, tmp_path):
    base, handler = server
    remote = Remote(f"{base}/cut/w.bin", sha256=DIGEST)
    with pytest.raises(NotFoundError, match="interrupted.*run again to resume"):
        fetch(remote, cache=tmp_path, progress=False, retries=0)
    part = tmp_path / "w.bin.part"
    assert not (tmp_path / "w.bin").exists()  # a half-written file is never in place
    assert 0 < part.stat().st_size < len(PAYLOAD)
    path = fetch(remote, cache=tmp_path, progress=False, retries=0)
    assert handler.ranges == [None, f"bytes={len(PAYLOAD) // 3}-"]  # asked only for the rest
    assert path.read_bytes() == PAYLOAD and not part.exists()


def test_interrupted_transfer_resumes_within_one_call(server, tmp_path):
    base, handler = server
    path = fetch(Remote(f"{base}/cut/w.bin", sha256=DIGEST), cache=tmp_path, progress=False, retries=2)
    assert path.read_bytes() == PAYLOAD and len(handler.ranges) == 2


def test_404_says_not_cached_and_where_to_put_the_file(server, tmp_path):
    base, _ = server
    with pytest.raises(NotFoundError, match=r"HTTP 404.*not cached; put the file at .*gone\.bin or pass --weights"):
        fetch(Remote(f"{base}/gone.bin", sha256=DIGEST[:8]), cache=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gone.bin.lock"]  # no partial or final file


def test_offline_mode_never_connects(server, tmp_path, monkeypatch):
    base, handler = server
    monkeypatch.setenv("LASER_OFFLINE", "1")
    with pytest.raises(NotFoundError, match=r"not cached .*put the file at .*w\.bin or pass --weights"):
        fetch(Remote(f"{base}/w.bin"), cache=tmp_path, progress=False)
    assert handler.ranges == []


def test_a_file_put_in_the_cache_by_hand_is_used_offline_after_its_hash_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("LASER_OFFLINE", "1")
    (tmp_path / "w.bin").write_bytes(PAYLOAD)
    assert fetch(Remote("http://127.0.0.1:9/w.bin", sha256=DIGEST[:8]), cache=tmp_path).read_bytes() == PAYLOAD
    (tmp_path / "w.bin").write_bytes(PAYLOAD[:-1])  # altered after it was recorded
    with pytest.raises(ArtifactError, match="changed since it was downloaded"):
        fetch(Remote("http://127.0.0.1:9/w.bin"), cache=tmp_path)


def test_no_published_hash_trusts_the_first_download_and_records_it(server, tmp_path):
    base, _ = server
    path = fetch(Remote(f"{base}/w.bin"), cache=tmp_path, progress=False)
    assert (tmp_path / "w.bin.sha256").read_text().strip() == DIGEST and path.is_file()


def test_cache_dir_follows_laser_cache_then_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("LASER_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "laser" / "weights"
    monkeypatch.setenv("LASER_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_a_malformed_hash_is_a_config_error():
    with pytest.raises(ConfigError, match="8 to 64 hex digits"):
        Remote("http://127.0.0.1/x.pth", sha256="xyz")
