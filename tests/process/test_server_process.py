"""The real commands, as an operator runs them."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.process.helpers import free_port, running, tiketi_command

pytestmark = pytest.mark.process


def test_serve_answers_over_http(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"DATABASE_URL": database_url, "TIKETI_ENV": "test", "JOBS_ENABLED": "false"}
    cmd = tiketi_command("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2")
    with running(cmd, env=env, log=tmp_path / "serve.log", base_url=base) as proc:
        response = httpx.get(f"{base}/health/ready")
        assert response.json()["migrations"] == "head"
        missing = httpx.get(f"{base}/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert "x-request-id" in missing.headers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_migrate_command(database_url: str, tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(
        tiketi_command("migrate"),
        env={**__import__("os").environ, "DATABASE_URL": database_url},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()


def test_production_refuses_weak_secret(tmp_path: Path) -> None:
    import os
    import subprocess

    result = subprocess.run(
        tiketi_command("serve"),
        env={
            **os.environ,
            "TIKETI_ENV": "production",
            "JWT_SECRET": "short",
            "DATABASE_URL": "postgresql://u@127.0.0.1:1/x",
        },
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert b"JWT_SECRET" in result.stderr


def test_dev_with_embedded_postgres_and_a_second_run_reuses_data(tmp_path: Path) -> None:
    """`tiketi dev` on a machine with no DATABASE_URL: embedded server, migrations, API."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["TIKETI_DATA_DIR"] = str(tmp_path / "data")
    for run in (1, 2):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        sim_port = free_port()
        env["MPESA_BASE_URL"] = f"http://127.0.0.1:{sim_port}"
        env["MPESA_SIMULATOR_CALLBACK_DELAY_SECONDS"] = "0.2"
        cmd = tiketi_command("dev", "--port", str(port))
        with running(
            cmd, env=env, log=tmp_path / f"dev{run}.log", base_url=base, timeout=120
        ) as proc:
            assert httpx.get(f"{base}/docs").status_code == 200
            # Demo data is there, and the simulator answers next to the API.
            login = httpx.post(
                f"{base}/auth/token",
                data={"username": "customer@tiketi.dev", "password": "tiketi-demo-2026"},
            )
            assert login.status_code == 200, login.text
            assert httpx.get(f"http://127.0.0.1:{sim_port}/__sim/requests").status_code == 200
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0
        assert (tmp_path / "data" / "pgdata" / "PG_VERSION").exists()
        # Ctrl-C stopped the embedded server too.
        assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists()
