"""What the deployment files promise, checked without a Docker engine or a cluster: the
Dockerfile and its pinned dependencies, docker-compose.yml with nginx and Prometheus,
deploy/k8s/ against the Kubernetes schemas, and the Grafana dashboard and alert rules
against the metrics the app exports."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import fakeredis
import kubernetes_validate
import pytest
import redis
import yaml
from kubernetes_validate.utils import all_versions
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.serving import make_server

import lockcore_service
from lockcore_service.server import settings as gunicorn_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli below 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"

#: The Kubernetes version deploy/k8s/ is validated against (schemas shipped in
#: kubernetes-validate; strict: an unknown field is an error).
K8S_VERSION = "1.31.0"

#: The image's platform, for the markers of its dependencies (python:3.11-slim, x86-64:
#: the latest 3.11 release, long past the 3.11.3 redis-py's markers name).
IMAGE_ENV = {
    "python_version": "3.11",
    "python_full_version": "3.11.9",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "extra": "",
}

#: The metrics the dashboard and the alerts are built on (the contract with
#: app/observability.py); each must be used by the dashboard.
CONTRACT_METRICS = (
    "lockcore_http_requests_total",
    "lockcore_http_request_seconds",
    "lockcore_lock_operations_total",
    "lockcore_locks_held",
    "lockcore_lock_waiters",
    "lockcore_lock_wait_seconds",
    "lockcore_lock_expirations_total",
    "lockcore_redis_call_seconds",
    "lockcore_redis_up",
)


@pytest.fixture(scope="module")
def app() -> Any:
    return lockcore_service.create_app(
        {"REDIS_CLIENT": fakeredis.FakeRedis(server=fakeredis.FakeServer()), "KEY_PREFIX": "t"}
    )


@pytest.fixture(scope="module")
def routes(app: Any) -> set[str]:
    return {rule.rule for rule in app.url_map.iter_rules()}


# --- the Dockerfile -------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (continuations joined, comments dropped) by stage."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, rest = (current + line).partition(" ")
        instructions.append((keyword.upper(), " ".join(rest.split())))
        current = ""
    assert not current, "the Dockerfile ends in a continuation"
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions:
        if keyword == "FROM":
            stages.append([])
        assert stages, "an instruction before the first FROM"
        stages[-1].append((keyword, rest))
    return stages


def exec_form(value: str) -> list[str]:
    words = json.loads(value)
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), value
    return words


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_dockerfile_builds_from_the_constraints_and_runs_slim_non_root(routes: set[str]) -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a multi-stage build"
    for stage in stages:
        assert stage[0][1].split()[0] == "python:3.11-slim"
    build, final = stages[0], stages[-1]
    assert stages[0][0][1].split()[-2:] == ["AS", "build"]

    # the build stage: lockcore with every dependency pinned, consistent
    runs = " && ".join(rest for keyword, rest in build if keyword == "RUN")
    assert re.search(r"pip install -c deploy/constraints\.txt \.(\s|$)", runs), runs
    assert "pip check" in runs

    # the final stage: the build's venv only, no compiler, no pip install
    for keyword, rest in final:
        if keyword == "COPY":
            assert rest.startswith("--from=build "), rest
        if keyword == "RUN":
            assert "pip" not in rest and "apt-get" not in rest, rest
    final_dict: dict[str, list[str]] = {}
    for keyword, rest in final:
        final_dict.setdefault(keyword, []).append(rest)

    # a non-root user with a fixed uid:gid, the one useradd made
    (user,) = final_dict["USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) > 0 and int(gid) > 0, user
    setup = " ".join(final_dict["RUN"])
    assert f"--uid {uid}" in setup and f"--gid {gid}" in setup

    # the embedded data directory: a volume, owned by that user
    env = dict(word.split("=", 1) for rest in final_dict["ENV"] for word in shlex.split(rest))
    data_dir = env["LOCKCORE_DATA_DIR"]
    (volume,) = final_dict["VOLUME"]
    assert exec_form(volume) == [data_dir]
    assert f"-o {uid} -g {gid}" in setup and data_dir in setup
    assert final_dict["STOPSIGNAL"] == ["SIGTERM"]

    # the service on the exposed port, never with the demo catalog
    (cmd,) = final_dict["CMD"]
    argv = exec_form(cmd)
    assert argv[:2] == ["lockcore", "serve"] and "--no-demo" in argv
    port = option(argv, "--port")
    assert final_dict["EXPOSE"] == [port]

    # the health check: python's urllib on /readyz of that port, within its own timeout
    (healthcheck,) = final_dict["HEALTHCHECK"]
    options, _, probe = healthcheck.partition(" CMD ")
    assert "--timeout=" in options and "--start-period=" in options
    probe_argv = exec_form(probe)
    assert probe_argv[:2] == ["python", "-c"]
    code = probe_argv[2]
    compile(code, "HEALTHCHECK", "exec")
    url = re.search(r"'(http://[^']+)'", code)
    assert url is not None, code
    assert url.group(1) == f"http://127.0.0.1:{port}/readyz"
    assert "/readyz" in routes


def healthcheck_code() -> str:
    (healthcheck,) = [rest for keyword, rest in dockerfile_stages()[-1] if keyword == "HEALTHCHECK"]
    return exec_form(healthcheck.partition(" CMD ")[2])[2]


@pytest.mark.parametrize("redis_up", [True, False], ids=["ready", "redis-down"])
def test_the_healthcheck_passes_when_ready_and_fails_on_a_503(redis_up: bool) -> None:
    """The HEALTHCHECK's own code, run against the app served on a free port: exit 0 when
    /readyz answers 200, not when it answers 503 (Redis unreachable)."""
    if redis_up:
        client: Any = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    else:
        client = redis.Redis(
            unix_socket_path="/nonexistent/redis.sock", retry=Retry(NoBackoff(), 0)
        )
    served = lockcore_service.create_app({"REDIS_CLIENT": client, "KEY_PREFIX": "t"})
    server = make_server("127.0.0.1", 0, served, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{server.server_port}", healthcheck_code())
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
        )
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        client.close()
    if redis_up:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode != 0 and "HTTP Error 503" in done.stderr, done.stderr


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "everything excluded but what is let in"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    copied = set()
    for stage in dockerfile_stages():
        for keyword, rest in stage:
            if keyword == "COPY" and not rest.startswith("--from="):
                *sources, _dest = rest.split()
                copied.update(s.removeprefix("./") for s in sources)
    assert copied == allowed
    for source in copied:
        assert (ROOT / source).exists(), source


def constraints() -> dict[str, tuple[str, str]]:
    """deploy/constraints.txt: canonical name -> (name as written, pinned version)."""
    pins: dict[str, tuple[str, str]] = {}
    for raw in (DEPLOY / "constraints.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==" and "*" not in spec.version, line
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{requirement.name} pinned twice"
        pins[name] = (requirement.name, spec.version)
    return pins


def runtime_requirements() -> list[Requirement]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(r) for r in pyproject["project"]["dependencies"]]


def test_constraints_pin_every_runtime_dependency_within_pyprojects_ranges() -> None:
    pins = constraints()
    assert canonicalize_name("lockcore") not in pins

    # pyproject's dependencies, whatever their markers: each pinned within its range
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in deploy/constraints.txt"
        version = pins[name][1]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{requirement.name}=={version} is outside pyproject's {requirement.specifier}"
        )

    # and theirs, as installed, for the image's platform: pinned, and where the installed
    # version is the pinned one, its own requirements are met by the pins
    seen: set[str] = set()
    todo = [r for r in runtime_requirements() if _applies(r)]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        assert name in pins, (
            f"{requirement.name} (a dependency as installed) is not pinned in "
            "deploy/constraints.txt: regenerate it (the command is in its header)"
        )
        assert requirement.specifier.contains(pins[name][1], prereleases=True), (
            f"{pins[name][0]}=={pins[name][1]} does not satisfy {requirement}"
        )
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue  # not on this machine: pinned is all that can be said
        if Version(dist.version) != Version(pins[name][1]):
            continue  # another version here: its requirements may differ from the pin's
        todo.extend(r for r in map(Requirement, dist.requires or []) if _applies(r))
    assert seen


def _applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(IMAGE_ENV)


# --- docker-compose.yml, nginx, Prometheus, Grafana -----------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def app_services(services: dict[str, Any]) -> list[str]:
    return sorted(name for name, s in services.items() if s.get("build") == ".")


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """A service's bind mounts: container path -> the repository file or directory."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (ROOT / source).resolve()
            assert mounts[target].exists(), source
    return mounts


def test_compose_runs_redis_with_aof_three_instances_and_a_balancer() -> None:
    services = compose()["services"]
    assert "--appendonly" in services["redis"]["command"]
    assert "yes" in services["redis"]["command"]
    apps = app_services(services)
    assert apps == ["app1", "app2", "app3"]
    for name in apps:
        assert services[name]["environment"]["LOCKCORE_REDIS_URL"] == "redis://redis:6379/0"
    nginx = (DEPLOY / "nginx.conf").read_text()
    for name in apps:
        assert f"server {name}:8000" in nginx
    assert bind_mounts(services["lb"]) == {
        "/etc/nginx/conf.d/default.conf": (DEPLOY / "nginx.conf").resolve()
    }
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'lockcore", "serve"' in dockerfile and "COPY lua" in dockerfile


def test_compose_restarts_everything_and_publishes_only_the_balancer() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
    for name in app_services(services):
        service = services[name]
        assert "ports" not in service, f"{name} must not publish a host port"
        assert "--no-demo" in service["command"]
        # stopped only once the drain is over
        grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
        assert grace is not None
        assert int(grace.group(1)) > gunicorn_settings(2, 8)["graceful_timeout"]
    assert services["lb"]["ports"] == ["8080:80"]
    # the monitoring is reachable from the host's loopback only
    for name in ("prometheus", "grafana"):
        for port in services[name].get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_nginx_refuses_metrics_on_the_public_port() -> None:
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert re.search(r"location\s*=\s*/metrics\s*\{\s*return\s+404;\s*\}", nginx)


def test_prometheus_scrapes_every_instance_and_loads_the_alerts() -> None:
    services = compose()["services"]
    mounts = bind_mounts(services["prometheus"])
    config_path = mounts["/etc/prometheus/prometheus.yml"]
    assert config_path == (DEPLOY / "prometheus" / "prometheus.yml").resolve()
    config = yaml.safe_load(config_path.read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "lockcore" and job.get("metrics_path", "/metrics") == "/metrics"
    (static,) = job["static_configs"]
    apps = app_services(services)
    assert sorted(static["targets"]) == [f"{name}:8000" for name in apps]
    # each rule file, relative to the config, is mounted beside it
    for rule_file in config["rule_files"]:
        target = str(Path("/etc/prometheus") / rule_file)
        assert mounts[target] == (DEPLOY / "prometheus" / rule_file).resolve()
    assert (DEPLOY / "prometheus" / "alerts.yml").resolve() in mounts.values()


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == (DEPLOY / "grafana" / "provisioning").resolve()
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "lockcore.yml").read_text())[
        "providers"
    ]
    folder = Path(provider["options"]["path"])
    dashboards = {target: path for target, path in mounts.items() if Path(target).parent == folder}
    assert list(dashboards.values()) == [(DEPLOY / "grafana" / "lockcore-dashboard.json").resolve()]


# --- Kubernetes -----------------------------------------------------------------------


def manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path.name, doc


def manifest(kind: str) -> dict[str, Any]:
    (found,) = [doc for _, doc in manifests() if doc["kind"] == kind]
    return found


def test_k8s_manifests_are_valid_against_the_kubernetes_schemas() -> None:
    assert K8S_VERSION in all_versions(), (
        f"kubernetes-validate {kubernetes_validate.__version__} ships no {K8S_VERSION} schemas"
    )
    kinds = []
    for name, doc in manifests():
        try:
            used = kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}")
        assert used == K8S_VERSION.rsplit(".", 1)[0]
        kinds.append(doc["kind"])
    assert sorted(kinds) == [
        "Deployment",
        "Namespace",
        "PodDisruptionBudget",
        "Secret",
        "Service",
    ]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    assert kustomization["namespace"] == manifest("Namespace")["metadata"]["name"]
    image = manifest("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert [i["name"] for i in kustomization["images"]] == [image.split(":")[0]]


def container() -> dict[str, Any]:
    (found,) = manifest("Deployment")["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = found
    return result


def test_deployment_probes_and_port_match_the_app_and_the_service(routes: set[str]) -> None:
    deployment = manifest("Deployment")
    pod = deployment["spec"]["template"]
    main = container()
    assert deployment["spec"]["replicas"] == 3
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    # the probes: liveness the process, readiness Redis too, on paths the app serves
    probes = {kind: main[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe")}
    probes["readinessProbe"] = main["readinessProbe"]["httpGet"]
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert probe["path"] in routes
        assert probe["port"] in ports or probe["port"] in ports.values()
    # the command serves on the container port, without the demo catalog
    argv = main["command"] + main.get("args", [])
    assert argv[:2] == ["lockcore", "serve"] and "--no-demo" in argv
    assert int(option(argv, "--port")) in ports.values()
    # the Service sends its port 80 there
    service = manifest("Service")
    (service_port,) = service["spec"]["ports"]
    assert service["spec"]["type"] == "ClusterIP" and service_port["port"] == 80
    target = service_port["targetPort"]
    assert ports.get(target, target) in ports.values()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    # Prometheus scrapes each pod where the app serves its metrics
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) in ports.values()
    assert annotations["prometheus.io/path"] in routes


def test_deployment_runs_non_root_read_only_with_the_redis_url_from_the_secret() -> None:
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    main = container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    (user,) = [rest for keyword, rest in dockerfile_stages()[-1] if keyword == "USER"]
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == user
    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # the one writable place: /tmp (gunicorn's heartbeats, the metrics of every worker)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= main["resources"][kind].keys()
    # the Redis URL: a key the Secret has
    env = {e["name"]: e for e in main["env"]}
    ref = env["LOCKCORE_REDIS_URL"]["valueFrom"]["secretKeyRef"]
    secret = manifest("Secret")
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret.get("stringData", {}) or ref["key"] in secret.get("data", {})


def test_termination_grace_outlasts_the_prestop_pause_and_the_drain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    main = container()
    # gunicorn's settings under the pod's LOCKCORE_* values
    for entry in main["env"]:
        if entry["name"].startswith("LOCKCORE_") and "value" in entry:
            monkeypatch.setenv(entry["name"], entry["value"])
    drain = gunicorn_settings(2, 8)["graceful_timeout"]
    pause = 0
    pre_stop = main.get("lifecycle", {}).get("preStop")
    if pre_stop is not None:
        assert pre_stop["exec"]["command"][0] == "sleep"
        pause = int(pre_stop["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > pause + drain


def test_pdb_keeps_two_of_the_three_pods() -> None:
    pdb = manifest("PodDisruptionBudget")["spec"]
    deployment = manifest("Deployment")["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["selector"] == deployment["selector"]
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable") == 2


# --- the dashboard and the alerts -----------------------------------------------------

_PROMQL_TOKEN = re.compile(
    r"""(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
      | (?P<range>\[[^\]]*\])
      | (?P<variable>\$\{[^}]*\}|\$\w+)
      | (?P<number>\d[\w.]*)
      | (?P<identifier>[A-Za-z_:][\w:]*)
      | (?P<punctuation>\S)""",
    re.VERBOSE,
)
#: Words followed by a list of label names, not metric names.
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _GROUPING | {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
_AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers outside strings, label
    matchers ``{...}``, ranges ``[...]`` and grouping lists ``by (...)``, that are neither
    a function (followed by ``(``), nor an aggregation or keyword."""
    tokens = [(m.lastgroup, m.group()) for m in _PROMQL_TOKEN.finditer(expr)]
    names: set[str] = set()
    depth = braces = 0
    labels_until: int | None = None  # inside `by (...)`: the depth it closes at
    expect_labels = False
    for i, (kind, text) in enumerate(tokens):
        if kind == "punctuation":
            if text == "{":
                braces += 1
            elif text == "}":
                braces -= 1
                assert braces >= 0, f"unbalanced braces: {expr}"
            elif text == "(":
                depth += 1
                if expect_labels:
                    labels_until, expect_labels = depth, False
            elif text == ")":
                if labels_until == depth:
                    labels_until = None
                depth -= 1
                assert depth >= 0, f"unbalanced parentheses: {expr}"
            continue
        if kind != "identifier" or braces or labels_until is not None:
            continue
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text in _GROUPING:
            expect_labels = following == "("  # group_left may come without a list
            continue
        if text in _KEYWORDS or text in _AGGREGATIONS or following == "(":
            continue
        names.add(text)
    assert depth == 0 and braces == 0, f"unbalanced: {expr}"
    return names


def test_promql_metric_names() -> None:
    assert promql_metric_names(
        'histogram_quantile(0.99, sum by (le, api) (rate(a_bucket{x="y(", le!="1"}[$__rate_interval])))'  # noqa: E501
    ) == {"a_bucket"}
    assert promql_metric_names(
        "max without (pid) (b) == 0 and on (instance) up offset 5m / ignoring(z) c"
    ) == {"b", "up", "c"}
    assert promql_metric_names("sum(rate(d[5m])) / sum(rate(e[${__range}]))") == {"d", "e"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (DEPLOY / "grafana" / "lockcore-dashboard.json").read_text()
    )
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row's panels
    return panels


def dashboard_expressions() -> list[str]:
    """Every PromQL expression of the dashboard (its variables' label_values() too)."""
    exprs = [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            assert match is not None, query
            exprs.append(match.group(1))
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_dashboard_is_a_grafana_dashboard_on_a_prometheus_variable() -> None:
    board = dashboard()
    assert board["title"] and board["uid"] and len(board["uid"]) <= 40
    assert isinstance(board["schemaVersion"], int)
    (source,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    reference = {"type": "prometheus", "uid": f"${{{source['name']}}}"}
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == reference, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == reference, panel["title"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == reference
    # every metric of the contract has its panel
    used = set().union(*map(promql_metric_names, dashboard_expressions()))
    for metric in CONTRACT_METRICS:
        assert any(name == metric or name.startswith(metric + "_") for name in used), metric


def test_alert_rules_are_well_formed() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert {
        "LockcoreRedisUnreachable",
        "LockcoreLockWaitP99High",
        "LockcoreHighErrorRatio",
    } <= set(names)
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"(\d+[smhdwy])+", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]
        assert promql_metric_names(rule["expr"]), rule["alert"]
    exprs = {rule["alert"]: rule["expr"] for rule in rules}
    assert "lockcore_redis_up" in exprs["LockcoreRedisUnreachable"]
    assert "lockcore_lock_wait_seconds_bucket" in exprs["LockcoreLockWaitP99High"]
    assert 'status=~"5.."' in exprs["LockcoreHighErrorRatio"]


def test_promtool_checks_the_rules_the_config_and_the_rules_unit_tests() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, (
        "promtool is missing: Debian's prometheus package ships it (.ci/run installs it)"
    )
    folder = DEPLOY / "prometheus"
    for command in (
        ["check", "rules", "alerts.yml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "alerts.test.yml"],
    ):
        done = subprocess.run(
            [promtool, *command],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"promtool {' '.join(command)}:\n{done.stdout}{done.stderr}"


def exported_metric_names(app: Any, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The series names the app's /metrics has, or declares (a labelled metric not yet
    observed has only its # HELP and # TYPE lines): a counter's _total, a histogram's
    _bucket, _sum and _count."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names = set()
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def test_dashboard_and_alerts_use_only_metrics_the_app_exports(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    exported = exported_metric_names(app, monkeypatch) | {"up"}
    missing = {}
    for source, exprs in (
        ("the dashboard", dashboard_expressions()),
        ("alerts.yml", [rule["expr"] for rule in alert_rules()]),
    ):
        for expr in exprs:
            unknown = promql_metric_names(expr) - exported
            if unknown:
                missing.setdefault(source, set()).update(unknown)
    assert not missing, f"metrics the app does not export: {missing}"
