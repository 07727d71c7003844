"""The plugin serves pilot bundles without a login: this installation's own built on first request, other
versions only if put there, each with its sha256 and cache headers; hostile version names are refused."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from autopilot_ops import __version__
from autopilot_ops.airflow.webapp.app import create_app
from autopilot_ops.airflow.webapp.settings import WebSettings
from autopilot_ops.pilot.shelf import BundleShelf, bundle_file_name


class CountingBuilder:
    """Builds a small stand-in bundle (the real builder is tested with the pilot) and counts its builds."""

    def __init__(self) -> None:
        self.builds = 0
        self.lock = threading.Lock()

    def __call__(self, directory: Path) -> None:
        with self.lock:
            self.builds += 1
        target = directory / bundle_file_name(__version__)
        partial = target.with_name(f".{target.name}.part")  # whole or not at all, as the real builder writes it
        partial.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
        partial.replace(target)


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return tmp_path / "bundles"


@pytest.fixture
def builder() -> CountingBuilder:
    return CountingBuilder()


@pytest.fixture
def anonymous(bundle_dir: Path, builder: CountingBuilder, log_root: Path, pg_dsn: str):
    """The app with no token at all: bundles need none."""
    app = create_app(WebSettings(dsn=pg_dsn, log_root=log_root, pilot_bundle_dir=bundle_dir))
    app.state.bundle_shelf = BundleShelf(bundle_dir, build=builder)
    with TestClient(app, root_path="/autopilot") as client:
        yield client
    app.state.store_pool.close()


def test_current_is_built_once_and_served_with_its_sum(anonymous, builder, bundle_dir):
    first = anonymous.get("/pilot/current.pyz")
    assert first.status_code == 200, first.text
    digest = hashlib.sha256(first.content).hexdigest()
    assert first.headers["etag"] == f'"{digest}"' and first.headers["cache-control"] == "no-cache"
    assert first.headers["x-autopilot-pilot-version"] == __version__
    again = anonymous.get(f"/pilot/{__version__}.pyz")
    assert again.content == first.content and "immutable" in again.headers["cache-control"]
    assert builder.builds == 1
    summed = anonymous.get("/pilot/current.pyz.sha256")
    assert summed.text == f"{digest}  {bundle_file_name(__version__)}\n"
    revalidated = anonymous.get("/pilot/current.pyz", headers={"If-None-Match": f'"{digest}"'})
    assert revalidated.status_code == 304 and not revalidated.content


def test_first_requests_at_once_build_one_bundle(bundle_dir, builder):
    shelf = BundleShelf(bundle_dir, build=builder)
    sums: list[str] = []
    threads = [threading.Thread(target=lambda: sums.append(shelf.get("current").sha256)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builder.builds == 1 and len(set(sums)) == 1 and len(sums) == 8


def test_another_version_is_served_only_if_it_was_put_there(anonymous, bundle_dir):
    missing = anonymous.get("/pilot/0.0.9.pyz")
    assert missing.status_code == 404 and "no pilot bundle 0.0.9" in missing.json()["detail"]
    bundle_dir.mkdir(parents=True, exist_ok=True)
    (bundle_dir / bundle_file_name("0.0.9")).write_bytes(b"old pilot")
    assert anonymous.get("/pilot/0.0.9.pyz").content == b"old pilot"
    assert anonymous.get("/pilot/0.0.9.pyz.sha256").text.split()[0] == hashlib.sha256(b"old pilot").hexdigest()


@pytest.mark.parametrize("version", ["..%2Fsecret", ".hidden", "a%00b", "x" * 65, "%2Fetc%2Fpasswd"])
def test_hostile_version_names_are_refused(anonymous, version, tmp_path):
    (tmp_path / "secret.pyz").write_bytes(b"not for you")
    reply = anonymous.get(f"/pilot/{version}.pyz")
    assert reply.status_code in (400, 404, 422) and reply.content != b"not for you"
