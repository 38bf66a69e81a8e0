"""deploy/kubernetes/ without a cluster: every overlay, alone and with each optional component, is
rendered by kustomize (`kubectl kustomize`), every object is validated against the Kubernetes JSON
schemas of the oldest release the manifests need and of the newest one known, strictly (an unknown
field fails), and checkov scans what was rendered: no finding may fail, and every accepted one is
skipped on the object with its reason (a `checkov.io/skipN` annotation) and listed here. Then what
matters for codeapi is asserted on the rendered objects: probes, the grants, the NetworkPolicies, the
resources computed from the sandbox limits, the image, the keys.

The tools are those `scripts/install --dev` puts in $SANDBOX_RUNTIME_DIR/deploy-tools
(deploy/kubernetes/install-tools).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
TOOLS = Path(os.environ.get("SANDBOX_RUNTIME_DIR", "/opt/codeapi")) / "deploy-tools" / "bin"

OVERLAYS = ("embedded", "shared")
COMPONENTS = ("skill-installs", "privileged-fallback")
# Each overlay alone, and with each optional component added (as an operator's overlay would).
VARIANTS = {overlay: (overlay, None) for overlay in OVERLAYS} | {
    f"{overlay}+{component}": (overlay, component) for overlay in OVERLAYS for component in COMPONENTS
}
# hostUsers with procMount: Unmasked admitted by default from 1.33 on; 1.37 is the newest schema set
# that kubernetes-validate (deploy/kubernetes/tools.txt) ships.
K8S_VERSIONS = ("1.33.0", "1.37.0")

API_LABELS = {"app.kubernetes.io/name": "codeapi", "app.kubernetes.io/component": "api"}
LIBRECHAT = {"kubernetes.io/metadata.name": "librechat"}, {"app.kubernetes.io/name": "librechat"}

# The checkov findings accepted on the Deployment, each justified by its annotation
# (deploy/kubernetes/base/deployment.yaml): a new finding, or a skip without a real finding behind
# it, fails test_checkov.
ACCEPTED = {
    "CKV_K8S_15": "imagePullPolicy IfNotPresent with a fixed tag",
    "CKV_K8S_20": "allowPrivilegeEscalation: the API server refuses false beside CAP_SYS_ADMIN",
    "CKV_K8S_22": "writable root filesystem",
    "CKV_K8S_23": "root (of the pod's own user namespace)",
    "CKV_K8S_25": "added capabilities SYS_ADMIN and SYS_PTRACE",
    "CKV_K8S_31": "seccomp Unconfined (RuntimeDefault denies pivot_root)",
    "CKV_K8S_35": "keys as environment variables",
    "CKV_K8S_37": "the runtime's default capability set kept",
    "CKV_K8S_39": "CAP_SYS_ADMIN",
    "CKV_K8S_43": "no digest until the operator pushes the image",
}
# Only with components/privileged-fallback (with hostUsers: false checkov passes uid 0 itself).
ACCEPTED_PRIVILEGED = {"CKV_K8S_16": "privileged", "CKV_K8S_40": "uid 0 that is the node's root"}

# The pod's memory, from the sizing settings (base/config.env) and what was measured
# (base/deployment.yaml's comment; docs/kubernetes.md, "How many sandboxes a node holds").
API_MIB, ZYGOTE_MIB, IDLE_SANDBOX_MIB, KEPT_SANDBOXES, FULL_RUNS = 100, 285, 23, 32, 4


def tool(name: str) -> Path:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/install --dev (deploy/kubernetes/install-tools)")
    return path


def run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, cwd=cwd, env=env)


def kustomize(directory: Path) -> str:
    result = run(tool("kubectl"), "kustomize", directory)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return result.stdout


def render_variant(overlay: str, component: str | None, scratch: Path) -> str:
    if component is None:
        return kustomize(KUSTOMIZE / "overlays" / overlay)
    # An overlay of the operator's: the overlay plus the component (kustomize wants relative paths).
    directory = scratch / f"{overlay}--{component}"
    directory.mkdir()
    base = os.path.relpath(KUSTOMIZE / "overlays" / overlay, directory)
    extra = os.path.relpath(KUSTOMIZE / "components" / component, directory)
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {base}\ncomponents:\n  - {extra}\n"
    )
    return kustomize(directory)


def file_name(variant: str) -> str:
    return variant.replace("+", "--") + ".yaml"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each variant rendered into one YAML file."""
    scratch = tmp_path_factory.mktemp("kustomize")
    out = tmp_path_factory.mktemp("rendered")
    files = {}
    for variant, (overlay, component) in VARIANTS.items():
        files[variant] = out / file_name(variant)
        files[variant].write_text(render_variant(overlay, component, scratch))
    return files


@pytest.fixture(scope="module")
def objects(rendered: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    return {variant: [o for o in yaml.safe_load_all(path.read_text()) if o] for variant, path in rendered.items()}


def only(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def of_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def api_container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = only(objs, "Deployment", "codeapi")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["api"]
    result: dict[str, Any] = containers[0]
    return result


def mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * units[unit]


# --- rendering, schemas, scanner -------------------------------------------------------------------


def test_every_variant_renders_the_same_objects(objects: dict[str, list[dict[str, Any]]]) -> None:
    for variant, objs in objects.items():
        kinds = sorted({o["kind"] for o in objs})
        expected = {"Namespace", "ServiceAccount", "ConfigMap", "Service", "Deployment", "NetworkPolicy"}
        assert expected <= set(kinds), variant
        assert not of_kind(objs, "Secret"), f"{variant}: keys are never rendered (docs/kubernetes.md, Secrets)"
        for obj in objs:
            if obj["kind"] not in ("Namespace", "RuntimeClass"):
                assert obj["metadata"].get("namespace") == "codeapi", f"{variant}: {obj['kind']} outside codeapi"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_schemas(rendered: dict[str, Path], version: str) -> None:
    """kubernetes-validate --strict: every object of every variant, no unknown or misplaced field."""
    result = run(tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, *rendered.values())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "did not validate" not in result.stdout


def checkov(directory: Path) -> dict[str, Any]:
    result = run(tool("checkov"), "-d", directory, "--framework", "kubernetes", "--skip-download", "-o", "json")
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: findings failed, read them below
    report = json.loads(result.stdout)
    if isinstance(report, list):  # one report per framework
        (report,) = report
    assert report["check_type"] == "kubernetes"
    results: dict[str, Any] = report["results"]
    assert not results["parsing_errors"], results["parsing_errors"]
    return results


def by_variant(checks: list[dict[str, Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {variant: set() for variant in VARIANTS}
    names = {file_name(variant): variant for variant in VARIANTS}
    for check in checks:
        found[names[Path(check["file_path"]).name]].add(check["check_id"])
    return found


def expected_skips(variant: str) -> set[str]:
    return set(ACCEPTED) | (set(ACCEPTED_PRIVILEGED) if "privileged-fallback" in variant else set())


def test_checkov(rendered: dict[str, Path], tmp_path: Path) -> None:
    results = checkov(next(iter(rendered.values())).parent)
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['resource']}, {Path(c['file_path']).name})"
        for c in results["failed_checks"]
    ]
    assert not failed, "checkov findings neither fixed nor accepted:\n" + "\n".join(failed)
    assert results["passed_checks"], "checkov checked nothing"
    skipped = by_variant(results["skipped_checks"])
    for variant in VARIANTS:
        assert skipped[variant] == expected_skips(variant), variant
    for check in results["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 30 and reason != "No comment provided", f"{check['check_id']} has no reason"

    # No stale skip: without the annotations exactly the accepted findings fail, and nothing else.
    bare = tmp_path / "bare"
    bare.mkdir()
    for variant, path in rendered.items():
        objs = [o for o in yaml.safe_load_all(path.read_text()) if o]
        for obj in objs:
            annotations = obj["metadata"].get("annotations", {})
            for key in [k for k in annotations if k.startswith("checkov.io/skip")]:
                del annotations[key]
        (bare / file_name(variant)).write_text(yaml.safe_dump_all(objs))
    unskipped = checkov(bare)
    assert not unskipped["skipped_checks"]
    assert by_variant(unskipped["failed_checks"]) == {variant: expected_skips(variant) for variant in VARIANTS}


def test_the_checks_catch_a_broken_manifest(rendered: dict[str, Path], tmp_path: Path) -> None:
    """The gate itself: a misspelt field fails the schemas, an unaccepted finding fails checkov."""
    objs = [o for o in yaml.safe_load_all(rendered["shared"].read_text()) if o]
    api_container(objs)["securityContext"]["procMout"] = "Unmasked"  # misspelt
    broken = tmp_path / "misspelt.yaml"
    broken.write_text(yaml.safe_dump_all(objs))
    result = run(tool("kubernetes-validate"), "--strict", "--quiet", "-k", K8S_VERSIONS[-1], broken)
    assert result.returncode != 0 and "procMout" in result.stdout

    objs = [o for o in yaml.safe_load_all(rendered["shared"].read_text()) if o]
    api_container(objs)["securityContext"]["privileged"] = True  # not accepted without the component
    scan = tmp_path / "scan"
    scan.mkdir()
    (scan / "shared.yaml").write_text(yaml.safe_dump_all(objs))
    assert {c["check_id"] for c in checkov(scan)["failed_checks"]} == {"CKV_K8S_16"}


# --- what the API pods need ------------------------------------------------------------------------


def variants_of(*names: str) -> Iterator[str]:
    for variant in VARIANTS:
        if any(name in variant.split("+") for name in names):
            yield variant


def test_probes(objects: dict[str, list[dict[str, Any]]]) -> None:
    for variant, objs in objects.items():
        api = api_container(objs)
        assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
        assert api["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}, variant
        assert api["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}, variant
        # The first start warms the Go cache (2-3 min measured): the startup probe allows 10 min.
        startup = api["startupProbe"]
        assert startup["httpGet"]["path"] == "/health"
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
        service = only(objs, "Service", "codeapi")
        assert service["spec"]["selector"] == API_LABELS
        assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_grants(objects: dict[str, list[dict[str, Any]]]) -> None:
    """What docker-compose.yml grants the API container, and only that (docs/kubernetes.md)."""
    for variant, objs in objects.items():
        pod = only(objs, "Deployment", "codeapi")["spec"]["template"]["spec"]
        context = api_container(objs)["securityContext"]
        assert context["capabilities"] == {"add": ["SYS_ADMIN", "SYS_PTRACE"], "drop": ["NET_RAW"]}, variant
        assert context["seccompProfile"] == {"type": "Unconfined"}
        assert context["appArmorProfile"] == {"type": "Unconfined"}
        assert pod["nodeSelector"] == {"codeapi.io/node-pool": "sandbox"}
        assert {"key": "codeapi.io/sandbox", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
        assert not any(pod.get(f"host{name}") for name in ("Network", "PID", "IPC"))
        namespace = only(objs, "Namespace", "codeapi")
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
        if "privileged-fallback" in variant:
            assert context["privileged"] is True and "procMount" not in context
            assert "hostUsers" not in pod and "runtimeClassName" not in pod
            assert not of_kind(objs, "RuntimeClass")
            anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            assert anti == [{"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": API_LABELS}}]
        else:
            assert context["privileged"] is False and context["procMount"] == "Unmasked"
            assert pod["hostUsers"] is False
            assert pod["runtimeClassName"] == only(objs, "RuntimeClass")["metadata"]["name"] == "codeapi-sandbox"


def selects_api(policy: dict[str, Any]) -> bool:
    selector = policy["spec"]["podSelector"]
    return set(selector) == {"matchLabels"} and selector["matchLabels"].items() <= API_LABELS.items()


def test_network_policies(objects: dict[str, list[dict[str, Any]]]) -> None:
    for variant, objs in objects.items():
        policies = of_kind(objs, "NetworkPolicy")
        assert policies and all(selects_api(p) for p in policies), variant
        pod_labels = only(objs, "Deployment", "codeapi")["spec"]["template"]["metadata"]["labels"]
        assert API_LABELS.items() <= pod_labels.items()

        ingress = [p for p in policies if "Ingress" in p["spec"]["policyTypes"]]
        assert [p["metadata"]["name"] for p in ingress] == ["codeapi-ingress"]
        (rule,) = ingress[0]["spec"]["ingress"]
        namespaces, pods = LIBRECHAT
        assert rule["from"] == [
            {"namespaceSelector": {"matchLabels": namespaces}, "podSelector": {"matchLabels": pods}}
        ]
        assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]

        # Egress: DNS always; Redis and S3 with the shared backend; 443 to public addresses only
        # with skill installs. Every rule names its ports and its peers (no allow-all).
        ports = set()
        for policy in policies:
            for egress in policy["spec"].get("egress", []):
                assert egress.get("to") and egress.get("ports"), f"{variant}: an egress rule open to all"
                ports |= {p["port"] for p in egress["ports"]}
                for peer in egress["to"]:
                    if "ipBlock" in peer:
                        assert peer["ipBlock"]["except"], f"{variant}: private ranges must stay closed"
                        assert {p["port"] for p in egress["ports"]} == {443}
        expected = {53}
        if "shared" in variant:
            expected |= {6379, 8333}
        if "skill-installs" in variant:
            expected |= {443}
        assert ports == expected, variant


def config_of(objs: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = only(objs, "ConfigMap")["data"]
    return data


def test_resources_cover_the_sandbox_limits(objects: dict[str, list[dict[str, Any]]]) -> None:
    for variant, objs in objects.items():
        config = config_of(objs)
        resources = api_container(objs)["resources"]
        assert set(resources) == {"requests", "limits"}
        for part in ("requests", "limits"):
            assert set(resources[part]) == {"cpu", "memory"}, variant
        memory = mebibytes(resources["limits"]["memory"])
        assert mebibytes(resources["requests"]["memory"]) == memory
        sandboxes = int(config["SANDBOX_POOL_PY"]) + KEPT_SANDBOXES
        floor = API_MIB + ZYGOTE_MIB + sandboxes * IDLE_SANDBOX_MIB + FULL_RUNS * int(config["MAX_MEMORY_MB"])
        assert floor <= memory <= floor * 1.25, f"{variant}: {memory} MiB for a computed {floor} MiB"
        # Each run has one CPU (cpu.max): the limit lets the planned full-size runs go at once.
        assert int(resources["limits"]["cpu"]) == FULL_RUNS
        assert int(resources["requests"]["cpu"]) <= FULL_RUNS


def test_image_is_pinned(objects: dict[str, list[dict[str, Any]]]) -> None:
    for variant, objs in objects.items():
        image = api_container(objs)["image"]
        name, _, tag = image.rpartition(":")
        assert "@sha256:" in image or (name and tag and tag != "latest"), f"{variant}: {image}"


def test_keys_come_from_the_secret(objects: dict[str, list[dict[str, Any]]]) -> None:
    for variant, objs in objects.items():
        config = config_of(objs)
        assert not [key for key in config if "KEY" in key or "PASSWORD" in key], variant
        env = {e["name"]: e for e in api_container(objs)["env"]}
        required = {"API_KEY"} | ({"S3_ACCESS_KEY", "S3_SECRET_KEY"} if "shared" in variant else set())
        optional = {"MASTER_API_KEY"} | ({"REDIS_PASSWORD"} if "shared" in variant else set())
        assert set(env) == required | optional, variant
        for name, entry in env.items():
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "codeapi-secrets" and ref["key"] == name
            assert ref.get("optional", False) is (name in optional)


def test_embedded(objects: dict[str, list[dict[str, Any]]]) -> None:
    for variant in variants_of("embedded"):
        objs = objects[variant]
        deployment = only(objs, "Deployment", "codeapi")["spec"]
        assert deployment["replicas"] == 1 and deployment["strategy"] == {"type": "Recreate"}
        assert not of_kind(objs, "HorizontalPodAutoscaler") and not of_kind(objs, "PodDisruptionBudget")
        assert not {"REDIS_HOST", "REDIS_URL", "S3_ENDPOINT"} & set(config_of(objs))
        claim = only(objs, "PersistentVolumeClaim", "codeapi-data")
        volumes = {v["name"]: v for v in deployment["template"]["spec"]["volumes"]}
        assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
        mounts = {m["name"]: m["mountPath"] for m in api_container(objs)["volumeMounts"]}
        assert mounts["data"] == "/var/lib/code-interpreter/data"  # DATA_DIR's default


def test_shared(objects: dict[str, list[dict[str, Any]]]) -> None:
    for variant in variants_of("shared"):
        objs = objects[variant]
        deployment = only(objs, "Deployment", "codeapi")
        assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
        config = config_of(objs)
        assert config["REDIS_HOST"] and config["S3_ENDPOINT"] and "://" not in config["S3_ENDPOINT"]
        hpa = only(objs, "HorizontalPodAutoscaler", "codeapi")["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "codeapi"}
        assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
        pdb = only(objs, "PodDisruptionBudget", "codeapi")["spec"]
        assert pdb["selector"] == {"matchLabels": API_LABELS} and pdb["maxUnavailable"] == 1


def test_skill_installs(objects: dict[str, list[dict[str, Any]]]) -> None:
    for variant, objs in objects.items():
        network = config_of(objs).get("ENABLE_SANDBOX_NETWORK", "false")
        assert network == ("true" if "skill-installs" in variant else "false"), variant
