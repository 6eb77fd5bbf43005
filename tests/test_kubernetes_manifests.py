"""deploy/kubernetes/: valid for the Kubernetes version docs/kubernetes.md names, and safe.

No cluster and no kustomize binary: devtools/kustomize.py renders the base, the example overlay
and the HPA variant; kubernetes-validate checks every object against Kubernetes' own schemas
(strict: an unknown field fails), KEDA's ScaledObject against the CRD schema KEDA publishes
(tests/data/keda/). The rest reads the rendered objects for what a schema cannot say.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from config.secret_files import is_secret
from config.settings import Settings
from devtools.kustomize import (
    KustomizeError,
    Manifest,
    containers,
    identity,
    load,
    merge,
    pod_spec,
    render,
)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
#: The version docs/kubernetes.md names (one kubernetes-validate ships schemas for).
KUBERNETES_VERSION = "1.34.0"
KEDA_CRD = Path(__file__).parent / "data" / "keda" / "keda.sh_scaledobjects.yaml"
ADAPTER_CONFIG = DEPLOY / "hpa" / "prometheus-adapter-config.yaml"
VARIANTS = {"base": DEPLOY / "base", "example": DEPLOY / "overlays/example", "hpa": DEPLOY / "hpa"}
#: What compose runs each process with (docker-compose.yml), and the Deployment running it.
PROCESSES = ("worker", "webhook", "flower", "console", "exporter")
#: Names no Settings field has but a process reads: Flower's own login variable.
NOT_SETTINGS = {"FLOWER_BASIC_AUTH"}
SECRET_LIKE = re.compile(r"TOKEN|SECRET|PASSWORD|AUTH|_URL$|BACKEND|INSTANCES$")
#: The pods' emptyDir (a path in the container, not on this machine).
POD_TMP = "/tmp"  # noqa: S108
ZAPI_TOKENS = {"ZAPI_INSTANCE_TOKEN", "ZAPI_CLIENT_TOKEN", "ZAPI_INSTANCES"}


@pytest.fixture(scope="module", params=list(VARIANTS))
def objects(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(VARIANTS[request.param])


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    return found


def deployment(objects: list[Manifest], process: str) -> Manifest:
    return named(objects, "Deployment", f"zapi-queue-{process}")


def settings_of(objects: list[Manifest]) -> dict[str, str]:
    data: dict[str, str] = named(objects, "ConfigMap", "zapi-queue-settings")["data"]
    return data


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) selects ``labels``."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        ok = {
            "In": present and labels.get(key) in (values or []),
            "NotIn": not present or labels.get(key) not in (values or []),
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


def pod_labels(obj: Manifest) -> dict[str, str]:
    labels: dict[str, str] = obj["spec"]["template"]["metadata"]["labels"]
    return labels


# --- Schemas ----------------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """A CRD's schema as the API server's strict field validation reads it: an object with
    ``properties`` takes no other field (unless it says it keeps unknown fields)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    keeps = schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and "additionalProperties" not in schema and not keeps:
        out["additionalProperties"] = False
    return out


def keda_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(KEDA_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def validate(obj: Manifest) -> None:
    """Kubernetes' schema for the version the docs name, or KEDA's for a ScaledObject."""
    if obj["apiVersion"].startswith("keda.sh/"):
        assert obj["kind"] == "ScaledObject", "only the ScaledObject's schema is vendored"
        keda_validator().validate(obj)
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_every_rendered_object_is_valid(objects: list[Manifest]) -> None:
    for obj in objects:
        validate(obj)


def test_the_prometheus_adapter_rule_is_valid_and_names_the_hpas_metric() -> None:
    (config_map,) = load(ADAPTER_CONFIG)
    validate(config_map)
    (rule,) = yaml.safe_load(config_map["data"]["config.yaml"])["externalRules"]
    hpa = named(render(VARIANTS["hpa"]), "HorizontalPodAutoscaler", "zapi-queue-worker")
    (metric,) = hpa["spec"]["metrics"]
    assert rule["name"]["as"] == metric["external"]["metric"]["name"]
    assert rule["seriesQuery"].startswith(metric["external"]["metric"]["name"] + "{")
    assert rule["metricsQuery"].startswith("sum(<<.Series>>{<<.LabelMatchers>>})")


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("Deployment", lambda obj: obj["spec"].update(replica=2)),  # misspelt
        ("Deployment", lambda obj: obj["spec"]["template"]["spec"].update(containers="worker")),
        ("ScaledObject", lambda obj: obj["spec"].update(minReplicas=0)),  # an HPA's name
        ("ScaledObject", lambda obj: obj["spec"]["triggers"][0]["metadata"].update(threshold=128)),
        ("ScaledObject", lambda obj: obj["spec"].pop("scaleTargetRef")),
    ],
)
def test_the_schemas_refuse_a_wrong_field(kind: str, change: Any) -> None:
    """The checks above can fail: a misspelt or mistyped field does not pass."""
    obj = copy.deepcopy(of_kind(render(VARIANTS["base"]), kind)[0])
    change(obj)
    with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
        validate(obj)


def test_the_docs_name_the_versions_validated_for() -> None:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    major_minor = KUBERNETES_VERSION.rpartition(".")[0]
    assert f"validated for **Kubernetes {major_minor}**" in text
    assert f"validated for Kubernetes {major_minor}" in (ROOT / "README.md").read_text()
    version = re.search(r"^# KEDA (v[\d.]+) ", KEDA_CRD.read_text(), re.MULTILINE)
    assert version, "the vendored CRD's header names its KEDA version"
    assert f"KEDA {version.group(1)} publishes" in text


def test_every_manifest_file_is_rendered_or_checked() -> None:
    """No YAML file under deploy/kubernetes/ escapes validation: each is a kustomization, a
    resource or a patch one of them names, or the adapter rule checked above."""
    named_files = {ADAPTER_CONFIG}
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        named_files.add(kustomization)
        spec = load(kustomization)[0]
        entries = [
            *spec.get("resources", []),
            *(p["path"] for p in spec.get("patches", []) if "path" in p),
        ]
        named_files |= {(kustomization.parent / entry).resolve() for entry in entries}
    assert set(DEPLOY.rglob("*.yaml")) <= named_files


# --- Security ---------------------------------------------------------------------------------


def image_uid() -> int:
    match = re.search(r"useradd\b[^\n]*--uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert match, "the Dockerfile creates its user with --uid"
    return int(match.group(1))


def test_every_pod_and_container_is_locked_down(objects: list[Manifest]) -> None:
    workloads = [obj for obj in objects if pod_spec(obj) is not None]
    assert {obj["metadata"]["name"] for obj in workloads} == {f"zapi-queue-{p}" for p in PROCESSES}
    for obj in workloads:
        spec = pod_spec(obj)
        assert spec is not None
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] == image_uid()
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in containers(obj):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get(POD_TMP) in tmp, "a writable /tmp on the read-only root"


def every_manifest_document() -> list[Manifest]:
    return [doc for path in DEPLOY.rglob("*.yaml") for doc in load(path)]


def test_no_secret_value_is_committed() -> None:
    for doc in every_manifest_document():
        if doc.get("kind") == "Secret":
            assert not doc.get("data"), doc["metadata"]
            assert not doc.get("stringData"), doc["metadata"]
    for doc in of_kind(every_manifest_document(), "ConfigMap"):
        for key in doc.get("data", {}):
            assert not SECRET_LIKE.search(key), f"{key} belongs in a Secret"


def env_of(obj: Manifest) -> list[dict[str, Any]]:
    return [var for container in containers(obj) for var in container.get("env", [])]


def test_secret_settings_come_from_secrets_only(objects: list[Manifest]) -> None:
    secret_settings = {n.upper() for n, f in Settings.model_fields.items() if is_secret(f)}
    for obj in objects:
        for var in env_of(obj):
            if var["name"] in secret_settings or SECRET_LIKE.search(var["name"]):
                assert "value" not in var, f"{var['name']} has a literal value"
                assert "secretKeyRef" in var["valueFrom"], var["name"]
    for key in settings_of(objects):
        assert key not in secret_settings, f"{key} is a secret setting in the ConfigMap"


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


@pytest.mark.parametrize("process", PROCESSES)
def test_each_process_runs_as_compose_runs_it_with_no_more_variables(process: str) -> None:
    """The same command as docker-compose.yml's service, and (but for the worker, which reads
    every setting) no variable compose does not give it: no Z-API token where compose has none."""
    obj = deployment(render(VARIANTS["example"]), process)
    service = compose_services()[process]
    (container,) = containers(obj)
    assert container["command"] == service["command"]
    names = {var["name"] for var in env_of(obj)}
    if process == "worker":
        assert {"configMapRef": {"name": "zapi-queue-settings"}} in container["envFrom"]
        return
    assert "envFrom" not in container, "only the worker reads the whole ConfigMap"
    assert names <= set(service["environment"]), names - set(service["environment"])
    assert not names & ZAPI_TOKENS


def test_every_variable_is_a_setting(objects: list[Manifest]) -> None:
    settings = {name.upper() for name in Settings.model_fields}
    used = {var["name"] for obj in objects for var in env_of(obj)} | set(settings_of(objects))
    assert used - settings <= NOT_SETTINGS, used - settings - NOT_SETTINGS


def test_the_worker_alone_holds_the_zapi_tokens(objects: list[Manifest]) -> None:
    for obj in objects:
        names = {var["name"] for var in env_of(obj)}
        if identity(obj)[1:] == ("Deployment", "zapi-queue-worker"):
            assert names >= ZAPI_TOKENS
        else:
            assert not names & ZAPI_TOKENS, obj["metadata"]["name"]


# --- Resources, probes, the stop --------------------------------------------------------------


UNITS = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}


def quantity(value: str | int) -> float:
    """A Kubernetes quantity of the forms the manifests use (``500m``, ``1``, ``192Mi``)."""
    match = re.fullmatch(r"([\d.]+)([a-zA-Z]*)", str(value))
    assert match, f"an unexpected quantity {value!r}"
    return float(match.group(1)) * UNITS[match.group(2)]


def test_every_deployment_has_requests_limits_and_probes(objects: list[Manifest]) -> None:
    for obj in of_kind(objects, "Deployment"):
        for container in containers(obj):
            resources = container["resources"]
            for side in ("requests", "limits"):
                assert set(resources[side]) >= {"cpu", "memory"}, obj["metadata"]["name"]
            for kind in ("cpu", "memory"):
                request, limit = resources["requests"][kind], resources["limits"][kind]
                assert quantity(request) <= quantity(limit), (obj["metadata"]["name"], kind)
            assert container["livenessProbe"], obj["metadata"]["name"]
            assert container["readinessProbe"], obj["metadata"]["name"]


def test_the_worker_probes_its_heartbeat_on_the_emptydir(objects: list[Manifest]) -> None:
    (worker,) = containers(deployment(objects, "worker"))
    assert worker["livenessProbe"]["exec"]["command"] == ["zapi-queue", "probe", "live"]
    assert worker["readinessProbe"]["exec"]["command"] == ["zapi-queue", "probe", "ready"]
    env = {var["name"]: var.get("value") for var in env_of(deployment(objects, "worker"))}
    assert env["ZAPI_HEARTBEAT_FILE"] == f"{POD_TMP}/zapi-queue/worker.heartbeat"


@pytest.mark.parametrize(("process", "path"), [
    ("webhook", "/healthz"), ("console", "/healthz"), ("flower", "/healthcheck"),
    ("exporter", "/metrics"),
])  # fmt: skip
def test_the_http_processes_probe_their_health_path(process: str, path: str) -> None:
    (container,) = containers(deployment(render(VARIANTS["example"]), process))
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == path


def test_the_grace_period_covers_the_drain_with_a_margin(objects: list[Manifest]) -> None:
    drain = float(settings_of(objects)["CELERY_WORKER_DRAIN_TIMEOUT"])
    spec = pod_spec(deployment(objects, "worker"))
    assert spec is not None
    assert spec["terminationGracePeriodSeconds"] >= drain + 10


# --- Traffic ----------------------------------------------------------------------------------


def test_only_the_ingress_controller_reaches_the_webhook(objects: list[Manifest]) -> None:
    webhook = pod_labels(deployment(objects, "webhook"))
    policies = [
        p for p in of_kind(objects, "NetworkPolicy") if selects(p["spec"]["podSelector"], webhook)
    ]
    assert any(not p["spec"].get("ingress") for p in policies), "a default deny selects it"
    sources = [
        peer for p in policies for rule in p["spec"].get("ingress", []) for peer in rule["from"]
    ]
    assert sources == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]


def test_every_pod_is_behind_a_default_deny(objects: list[Manifest]) -> None:
    denies = [p for p in of_kind(objects, "NetworkPolicy") if not p["spec"].get("ingress")]
    for obj in of_kind(objects, "Deployment"):
        assert any(selects(p["spec"]["podSelector"], pod_labels(obj)) for p in denies)


def container_ports(obj: Manifest) -> set[int | str]:
    ports = [port for container in containers(obj) for port in container.get("ports", [])]
    return {port["containerPort"] for port in ports} | {port["name"] for port in ports}


def test_each_service_reaches_a_deployments_port(objects: list[Manifest]) -> None:
    for service in of_kind(objects, "Service"):
        targets = [
            obj
            for obj in of_kind(objects, "Deployment")
            if selects({"matchLabels": service["spec"]["selector"]}, pod_labels(obj))
        ]
        assert len(targets) == 1, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports(targets[0])


def test_each_deployment_has_a_pod_disruption_budget(objects: list[Manifest]) -> None:
    budgets = of_kind(objects, "PodDisruptionBudget")
    for obj in of_kind(objects, "Deployment"):
        matching = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(obj))]
        assert len(matching) == 1, obj["metadata"]["name"]
        assert selects(obj["spec"]["selector"], pod_labels(obj))


def test_the_ingress_routes_only_the_webhook_path() -> None:
    objects = render(VARIANTS["example"])
    (ingress,) = of_kind(objects, "Ingress")
    service = named(objects, "Service", "zapi-queue-webhook")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["path"] == "/webhooks/zapi"
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}


# --- Autoscaling ------------------------------------------------------------------------------


def test_keda_scales_the_worker_on_the_backlog_per_128_jobs() -> None:
    objects = render(VARIANTS["base"])
    scaled = named(objects, "ScaledObject", "zapi-queue-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == deployment(objects, "worker")["metadata"]["name"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == "sum(zapi_queue_scaling_backlog_jobs)"
    assert trigger["metadata"]["threshold"] == settings_of(objects)["WORKER_CONCURRENCY"] == "128"
    assert trigger["metadata"]["activationThreshold"] == "0"
    assert scaled["minReplicaCount"] == 1
    assert "cooldownPeriod" in scaled
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 60


def test_the_hpa_variant_replaces_keda_with_the_same_scaling() -> None:
    base, hpa_objects = render(VARIANTS["base"]), render(VARIANTS["hpa"])
    assert not of_kind(hpa_objects, "ScaledObject")
    scaled = named(base, "ScaledObject", "zapi-queue-worker")["spec"]
    hpa = named(hpa_objects, "HorizontalPodAutoscaler", "zapi-queue-worker")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "zapi-queue-worker",
    }
    assert hpa["metrics"][0]["external"]["target"] == {
        "type": "AverageValue",
        "averageValue": scaled["triggers"][0]["metadata"]["threshold"],
    }
    assert hpa["behavior"] == scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (
        scaled["minReplicaCount"],
        scaled["maxReplicaCount"],
    )


# --- The overlay and the renderer -------------------------------------------------------------


def test_the_example_overlay_sets_namespace_tag_and_sizes() -> None:
    objects = render(VARIANTS["example"])
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "zapi-queue", obj["metadata"]["name"]
    for obj in of_kind(objects, "Deployment"):
        for container in containers(obj):
            assert container["image"] == "ghcr.io/zapi-queue/zapi-queue:0.1.0"
    assert deployment(objects, "webhook")["spec"]["replicas"] == 3
    base_worker = containers(deployment(render(VARIANTS["base"]), "worker"))[0]
    (worker,) = containers(deployment(objects, "worker"))
    assert worker["resources"] != base_worker["resources"]
    assert worker["env"] == base_worker["env"], "a strategic merge keeps what it does not name"
    assert settings_of(objects)["ZAPI_INSTANCE_ID"]
    assert settings_of(objects)["CELERY_WORKER_DRAIN_TIMEOUT"] == "30"


@pytest.mark.parametrize(
    "kustomization",
    [
        {"resources": ["a.yaml"], "commonLabels": {"a": "b"}},  # a field not rendered
        {"resources": ["a.yaml"], "patches": [{"path": "p.yaml", "target": {"kind": "X"}}]},
        {"resources": ["a.yaml"], "patches": [{"path": "p.yaml"}], "namespace": "n"},
    ],
)
def test_the_renderer_refuses_what_it_would_not_render(
    tmp_path: Path, kustomization: dict[str, Any]
) -> None:
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (tmp_path / "p.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    with pytest.raises(KustomizeError):
        render(tmp_path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.text(max_size=5).filter(lambda k: not k.startswith("$")), children, max_size=3
        )
    ),
    max_leaves=12,
)
documents = st.dictionaries(
    st.sampled_from(["spec", "env", "containers", "data", "x"]), json_values, max_size=4
)


@given(documents, documents, st.booleans())
def test_a_merge_takes_the_patch_and_keeps_the_rest(
    base: dict[str, Any], patch: dict[str, Any], strategic: bool
) -> None:
    merged = merge(base, patch, strategic=strategic)
    for key, value in base.items():
        if key not in patch:
            assert merged[key] == value
    for key, value in patch.items():
        if value is None:
            assert key not in merged
        elif not isinstance(value, dict | list):
            assert merged[key] == value
    assert merge(merged, {}, strategic=strategic) == merged
