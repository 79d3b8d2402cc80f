"""Offline checks of the deployment files (`make deploy-check`).

  1. Helm chart: `helm lint --strict` and values.schema.json for the default
     values and every deploy/helm/examples/*.yaml, through Helm's own Go SDK
     (helm-python-sdk); values the chart must refuse are refused.
  2. Render (`helm template`) each of them, then validate every object against
     the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown
     fields fail) for the oldest and newest Kubernetes the chart supports;
     PrometheusRule groups go through `promtool check rules`.
  3. The chart keeps its promises: probes, drain timing, non-root read-only
     pods, one beat, the migrations hook, no secret value in a manifest.
  4. The chart's copies of deploy/monitoring/ files are identical to them.
  5. deploy/Containerfile and .dockerignore lint.

Runs with var/deploy-tools/bin/python (deploy/requirements-deploy.lock).
Rendered manifests are written to artifacts/helm/. Exits 1 on any failure.
"""

from __future__ import annotations

import copy
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "xrouter"
EXAMPLES = ROOT / "deploy" / "helm" / "examples"
OUT = ROOT / "artifacts" / "helm"
# Chart.yaml's kubeVersion floor, and the newest schemas the validator ships.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
RELEASE, NAMESPACE = "xrouter", "xrouter"
# Settings whose values are secrets: they may only come from a Secret.
SECRET_ENV = {
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "XROUTER_METRICS_TOKEN",
    "EMAIL_HOST_PASSWORD",
}

failures: list[str] = []


def fail(where: str, message: str) -> None:
    failures.append(f"{where}: {message}")
    print(f"  FAIL {where}: {message}")


def value_sets() -> dict[str, dict[str, Any] | None]:
    sets: dict[str, dict[str, Any] | None] = {"default": None}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        sets[path.stem] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return sets


def deep_set(values: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(values)
    node = out
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


def render(values: dict[str, Any] | None) -> dict[str, str]:
    chart = helm_python.Chart.load(CHART)
    chart.validate_schema(values)
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def objects(manifests: dict[str, str]) -> Iterator[tuple[str, dict[str, Any]]]:
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                yield template, doc


def check_lint(name: str, values: dict[str, Any] | None) -> None:
    report = helm_python.lint(CHART, values, strict=True, namespace=NAMESPACE)
    for message in report.get("messages", []):
        if message.get("severity", 0) >= 2:
            fail(f"lint[{name}]", f"{message.get('path')}: {message.get('error')}")
    for error in report.get("errors", []):
        fail(f"lint[{name}]", str(error))


# Values the chart must refuse, each with the reason it is wrong.
REFUSED: list[tuple[str, Any, str]] = [
    ("config.env.DATABASE_URL", "postgres://u:pw@db/x", "a secret as a plain value"),
    ("config.env.SECRET_KEY", "hunter2", "a secret as a plain value"),
    ("secrets.value", "hunter2", "an unknown key under secrets"),
    ("secrets.existingSecret", "", "no Secret named"),
    ("securityContext.readOnlyRootFilesystem", False, "a writable root filesystem"),
    ("podSecurityContext.runAsNonRoot", False, "root allowed"),
    ("gateway.terminationGracePeriodSeconds", 60, "a grace period shorter than the drain"),
    ("gateway.replicaCount", 1, "a PodDisruptionBudget that can never be met"),
    ("image.digest", "latest", "a digest that is not sha256:..."),
    ("secrets.providers.names", ["GIGACHAT_CREDENTIALS"], "provider names without a Secret"),
]


def check_refused() -> None:
    base: dict[str, Any] = {}
    for dotted, value, reason in REFUSED:
        try:
            render(deep_set(base, dotted, value))
        except helm_python.HelmError as exc:
            first = " ".join(str(exc).split())[:160]
            print(f"  ok   refused {dotted}={value!r} ({reason}): {first}")
        else:
            fail("values", f"{dotted}={value!r} ({reason}) was accepted")


def check_schemas(name: str, objs: list[tuple[str, dict[str, Any]]]) -> None:
    for template, obj in objs:
        where = f"{name}:{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if obj.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            check_prometheus_operator(where, obj)
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                fail(where, f"Kubernetes {version} schema ({template}): {exc.message}")
            except kubernetes_validate.SchemaNotFoundError:
                fail(where, f"no Kubernetes {version} schema for {obj.get('apiVersion')}")


def check_prometheus_operator(where: str, obj: dict[str, Any]) -> None:
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "PrometheusRule":
        promtool = shutil.which("promtool")
        if promtool is None:
            fail(where, "promtool is not installed (scripts/ensure-services.sh installs it)")
            return
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
            yaml.safe_dump(spec, handle)
        result = subprocess.run(
            [promtool, "check", "rules", handle.name], capture_output=True, text=True
        )
        Path(handle.name).unlink()
        if result.returncode != 0:
            fail(where, f"promtool check rules: {result.stdout}{result.stderr}")
        expected = yaml.safe_load((ROOT / "deploy/monitoring/alerts.yml").read_text())
        if spec != expected:
            fail(where, "spec differs from deploy/monitoring/alerts.yml")
    elif kind == "ServiceMonitor":
        endpoints = spec.get("endpoints") or []
        if not spec.get("selector", {}).get("matchLabels") or not endpoints:
            fail(where, "a ServiceMonitor needs spec.selector.matchLabels and endpoints")
        for endpoint in endpoints:
            if endpoint.get("path") != "/metrics" or endpoint.get("port") != "http":
                fail(where, f"endpoint {endpoint} does not scrape port http at /metrics")
    else:
        fail(where, f"unexpected Prometheus Operator kind {kind}")


def find(objs: list[tuple[str, dict[str, Any]]], kind: str, suffix: str) -> dict[str, Any] | None:
    for _template, obj in objs:
        if obj.get("kind") == kind and obj["metadata"]["name"].endswith(suffix):
            return obj
    return None


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list(obj["spec"]["template"]["spec"]["containers"])


def check_promises(name: str, values: dict[str, Any] | None, objs: list[Any]) -> None:
    merged = helm_python.Chart.load(CHART).merge_values(values)
    where = f"promises[{name}]"
    gateway = find(objs, "Deployment", "-gateway")
    if gateway is None:
        fail(where, "no gateway Deployment")
        return
    pod = gateway["spec"]["template"]["spec"]
    (container,) = containers(gateway)
    probes = {
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
        "startupProbe": "/healthz",
    }
    for probe, path in probes.items():
        if container.get(probe, {}).get("httpGet", {}).get("path") != path:
            fail(where, f"gateway {probe} is not GET {path}")
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    script = " ".join(pre_stop or [])
    env_names = {item["name"]: item.get("value") for item in container["env"]}
    drain_file = env_names.get("XROUTER_DRAIN_FILE")
    if "sleep" not in script:
        fail(where, "gateway has no preStop sleep")
    if not drain_file or f"touch {drain_file}" not in script:
        fail(where, "the preStop hook does not create XROUTER_DRAIN_FILE (readiness 503 first)")
    readiness = container.get("readinessProbe", {})
    unready_after = readiness.get("periodSeconds", 10) * readiness.get("failureThreshold", 3)
    if unready_after >= merged["gateway"]["preStopSleepSeconds"]:
        fail(where, f"readiness fails after {unready_after}s, not within the preStop sleep")
    drain = merged["gateway"]["preStopSleepSeconds"] + merged["gateway"]["gracefulTimeoutSeconds"]
    if pod["terminationGracePeriodSeconds"] <= drain:
        fail(where, f"terminationGracePeriodSeconds <= preStop + graceful ({drain})")
    env = {item["name"]: item for item in container["env"]}
    if env.get("XROUTER_GRACEFUL_TIMEOUT", {}).get("value") != str(
        merged["gateway"]["gracefulTimeoutSeconds"]
    ):
        fail(where, "XROUTER_GRACEFUL_TIMEOUT does not follow gateway.gracefulTimeoutSeconds")
    if "affinity" not in pod and merged["gateway"]["podAntiAffinity"] != "none":
        fail(where, "gateway has no pod anti-affinity")
    strategy = gateway["spec"]["strategy"]["rollingUpdate"]
    if strategy.get("maxUnavailable") != 0:
        fail(where, "gateway rolling update may take a pod away before its successor is ready")
    beat = find(objs, "Deployment", "-beat")
    if beat is not None and (
        beat["spec"].get("replicas") != 1 or beat["spec"]["strategy"]["type"] != "Recreate"
    ):
        fail(where, "beat must be one replica with the Recreate strategy")
    job = find(objs, "Job", f"-migrate-{1}")
    hooks = (job or {}).get("metadata", {}).get("annotations", {}).get("helm.sh/hook", "")
    if set(hooks.split(",")) != {"pre-install", "pre-upgrade"}:
        fail(where, f"migrations Job hook is {hooks!r}, not pre-install,pre-upgrade")
    for _template, obj in objs:
        if obj.get("kind") not in {"Deployment", "Job"}:
            continue
        spec = obj["spec"]["template"]["spec"]
        label = f"{obj['kind']}/{obj['metadata']['name']}"
        if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
            fail(where, f"{label} may run as root")
        for item in containers(obj):
            security = item.get("securityContext", {})
            if security.get("readOnlyRootFilesystem") is not True:
                fail(where, f"{label} root filesystem is writable")
            if security.get("allowPrivilegeEscalation") is not False:
                fail(where, f"{label} allows privilege escalation")
            for var in item.get("env", []):
                if var["name"] in SECRET_ENV and "value" in var:
                    fail(where, f"{label} has the secret {var['name']} as a plain value")
    for _template, obj in objs:
        if obj.get("kind") == "Secret":
            fail(where, f"the chart renders a Secret ({obj['metadata']['name']}); reference one")


def check_monitoring_copies() -> None:
    for name in ("alerts.yml", "grafana-dashboard.json"):
        source, copy_ = ROOT / "deploy/monitoring" / name, CHART / "files" / name
        if not copy_.exists() or copy_.read_bytes() != source.read_bytes():
            fail("chart files", f"{copy_.relative_to(ROOT)} differs from deploy/monitoring/{name}")


def containerfile_instructions(text: str) -> list[tuple[str, str]]:
    joined, out = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if not joined and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            joined += line[:-1] + " "
            continue
        joined += line
        keyword, _, rest = joined.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        joined = ""
    return out


def check_containerfile() -> None:
    where = "Containerfile"
    instructions = containerfile_instructions((ROOT / "deploy/Containerfile").read_text())
    rules: list[tuple[str, Callable[[], bool]]] = [
        (
            "ARG BASE_IMAGE=... comes before the first FROM",
            lambda: instructions[0][0] == "ARG" and instructions[0][1].startswith("BASE_IMAGE="),
        ),
        (
            "every FROM uses ${BASE_IMAGE}",
            lambda: all(
                rest.startswith("${BASE_IMAGE}") for kw, rest in instructions if kw == "FROM"
            ),
        ),
        (
            "no ADD (COPY only; no remote URLs)",
            lambda: not any(kw == "ADD" for kw, _ in instructions),
        ),
        (
            "pip installs only from requirements.lock with --require-hashes",
            lambda: all(
                "--require-hashes" in rest and "requirements.lock" in rest
                for kw, rest in instructions
                if kw == "RUN" and "pip install" in rest
            ),
        ),
        ("a HEALTHCHECK is declared", lambda: any(kw == "HEALTHCHECK" for kw, _ in instructions)),
        (
            "the last USER is a non-root numeric uid",
            lambda: (
                (users := [rest for kw, rest in instructions if kw == "USER"]) != []
                and users[-1].split(":")[0].isdigit()
                and users[-1].split(":")[0] != "0"
            ),
        ),
        (
            "tini is the ENTRYPOINT",
            lambda: any(kw == "ENTRYPOINT" and "tini" in rest for kw, rest in instructions),
        ),
        (
            "apt lists are removed in the layer that fetched them",
            lambda: all(
                "rm -rf /var/lib/apt/lists" in rest
                for kw, rest in instructions
                if kw == "RUN" and "apt-get update" in rest
            ),
        ),
    ]
    for description, rule in rules:
        if not rule():
            fail(where, description)
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (".git", ".venv", "var"):
        if needed not in ignored:
            fail(".dockerignore", f"{needed} is not excluded from the build context")
    for kw, rest in instructions:
        if kw == "CMD" and rest.startswith("["):
            continue
        if kw == "CMD":
            fail(where, f"CMD in shell form ({shlex.split(rest)[0]}): signals would not reach it")


def main() -> int:
    print(f"helm SDK {helm_python.__version__ if hasattr(helm_python, '__version__') else ''}")
    OUT.mkdir(parents=True, exist_ok=True)
    for name, values in value_sets().items():
        print(f"== values: {name}")
        check_lint(name, values)
        try:
            manifests = render(values)
        except helm_python.HelmError as exc:
            fail(f"render[{name}]", str(exc))
            continue
        objs = list(objects(manifests))
        (OUT / f"{name}.yaml").write_text(
            "".join(f"---\n# {t}\n{yaml.safe_dump(o, sort_keys=False)}" for t, o in objs)
        )
        kinds = sorted({str(o.get("kind")) for _t, o in objs})
        print(f"  {len(objs)} objects ({', '.join(kinds)}) -> {OUT.relative_to(ROOT)}/{name}.yaml")
        check_schemas(name, objs)
        check_promises(name, values, objs)
    print("== values the chart must refuse")
    check_refused()
    print("== chart copies of deploy/monitoring")
    check_monitoring_copies()
    print("== Containerfile lint")
    check_containerfile()
    if failures:
        print(f"deploy check: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("deploy check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
