"""docker-compose.yml can't run here (no Docker engine); check what it promises."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_runs_redis_with_aof_three_instances_and_a_balancer() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "--appendonly" in services["redis"]["command"]
    assert "yes" in services["redis"]["command"]
    apps = [name for name, s in services.items() if s.get("build") == "."]
    assert sorted(apps) == ["app1", "app2", "app3"]
    for name in apps:
        assert services[name]["environment"]["LOCKCORE_REDIS_URL"] == "redis://redis:6379/0"
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    for name in apps:
        assert f"server {name}:8000" in nginx
    volume = services["lb"]["volumes"][0].split(":")[0]
    assert (ROOT / volume).resolve() == (ROOT / "deploy" / "nginx.conf").resolve()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'lockcore", "serve"' in dockerfile and "COPY lua" in dockerfile
