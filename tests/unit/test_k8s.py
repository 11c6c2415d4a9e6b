"""The Kubernetes manifests (deploy/k8s), rendered with the pinned kustomize and checked for what a reviewer
would catch: probes on each service's real health names, ports that match, non-root read-only pods, the
orchestrator finding its peers through headless Services, settings the services really read, shutdown times
that cover the drain, the store, GPU pods never scaled on CPU, and a prod overlay with its components.
Schemas (Kubernetes, KEDA) are `make deploy-check`'s job; this is about meaning. No cluster is needed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
from functools import cache

import pytest
import yaml

from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
SERVICES = {"orchestrator": (50051, 9091), "tokenizer": (50052, 9092), "inference": (50053, 9093)}
DNS = re.compile(r"^dns:///(?P<host>[^.]+)\.\$\(POD_NAMESPACE\)\.svc\.cluster\.local:(?P<port>\d+)$")


def _render():
    spec = importlib.util.spec_from_file_location("tokenway_k8s_render", K8S / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.KUSTOMIZE.exists():  # the pinned kustomize, as `make test` installs what is missing
        subprocess.run([str(ROOT / "tools" / "setup.sh"), "deploy"], check=True)
    return module


@cache
def rendered() -> dict[str, list[dict]]:
    render = _render()
    return {name: render.objects(path) for name, path in render.targets().items()}


TARGETS = ["dev", "prod", "every-component"]


def kinds(target: str, kind: str) -> list[dict]:
    return [o for o in rendered()[target] if o["kind"] == kind]


def get(target: str, kind: str, name: str) -> dict:
    (found,) = [o for o in kinds(target, kind) if o["metadata"]["name"] == name]
    return found


def container(deployment: dict) -> dict:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def tokenway_settings(service: str) -> set[str]:
    if service == "envoy":
        return set(re.findall(r"TOKENWAY_[A-Z_]+[A-Z]", (ROOT / "tools" / "envoy.py").read_text()))
    from tokenway_inference.config import PREFIX as INF, InferenceSettings
    from tokenway_orchestrator.config import PREFIX as ORCH, OrchestratorSettings
    from tokenway_tokenizer.config import ENV_PREFIX as TOK, TokenizerSettings

    prefix, cls = {"orchestrator": (ORCH, OrchestratorSettings), "tokenizer": (TOK, TokenizerSettings),
                   "inference": (INF, InferenceSettings)}[service]
    names = {f"{prefix}_{f.name.upper()}" for f in dataclasses.fields(cls)}
    return names | ({"TOKENWAY_MODEL"} if service != "orchestrator" else set())


def health_name(service: str) -> str:
    from tokenway.v1 import chat_pb2
    from tokenway_inference.app import SERVICE_NAME as INFERENCE
    from tokenway_tokenizer.config import SERVICE_NAME as TOKENIZER

    return {"orchestrator": chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
            "tokenizer": TOKENIZER, "inference": INFERENCE}[service]


def probe_target(probe: dict, service: str) -> tuple[int, str]:
    """(port, health name) a gRPC probe asks, natively or through the image's health check (components/tls)."""
    handlers = [k for k in ("grpc", "exec", "httpGet", "tcpSocket") if k in probe]
    assert len(handlers) == 1, f"a probe has exactly one handler: {handlers}"
    if "grpc" in probe:
        return probe["grpc"]["port"], probe["grpc"].get("service", "")
    argv = probe["exec"]["command"]
    assert argv[:2] == ["python", "/opt/tokenway/health.py"], argv
    assert argv[argv.index("--prefix") + 1] == f"TOKENWAY_{service.upper()}"
    return SERVICES[service][0], argv[argv.index("--service") + 1] if "--service" in argv else ""


def deployments(target: str) -> list[tuple[str, dict]]:
    return [(d["metadata"]["name"], d) for d in kinds(target, "Deployment")]


def pairs():
    return [(t, name) for t in TARGETS for name, _ in deployments(t)]


def test_the_overlays_and_components_render():
    for target in TARGETS:
        names = {n for n, _ in deployments(target)}
        assert {"orchestrator", "tokenizer", "inference"} <= names, (target, names)
    assert {n for n, _ in deployments("prod")} == {"orchestrator", "tokenizer", "inference", "envoy"}


@pytest.mark.parametrize("target,name", [(t, n) for t, n in pairs() if n in SERVICES])
def test_probes_ask_each_services_own_health_name_on_its_named_grpc_port(target, name):
    c = container(get(target, "Deployment", name))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": SERVICES[name][0], "metrics": SERVICES[name][1]}, ports
    for kind in ("startupProbe", "readinessProbe"):
        assert probe_target(c[kind], name) == (ports["grpc"], health_name(name)), kind
    # liveness is the process only (""): a service waiting for its peers or its model is alive, not ready
    assert probe_target(c["livenessProbe"], name) == (ports["grpc"], "")


@pytest.mark.parametrize("target,name", pairs())
def test_every_pod_runs_non_root_read_only_without_capabilities(target, name):
    pod = get(target, "Deployment", name)["spec"]["template"]["spec"]
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001 and sc["runAsGroup"] == 10001
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    c = container(get(target, "Deployment", name))
    csc = c["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    # what the images write goes to volumes: /tmp (HOME, caches, the rendered Envoy config)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == name
    assert get(target, "ServiceAccount", name)


@pytest.mark.parametrize("target", TARGETS)
def test_the_orchestrator_finds_every_tokenizer_and_inference_pod_through_a_headless_service(target):
    c = container(get(target, "Deployment", "orchestrator"))
    e = env(c)
    names = list(e)
    assert e["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    for setting, peer in (("TOKENWAY_ORCHESTRATOR_INFERENCE_ADDRESSES", "inference"),
                          ("TOKENWAY_ORCHESTRATOR_TOKENIZER_ADDRESS", "tokenizer")):
        # $(POD_NAMESPACE) is expanded by the kubelet only from a variable defined before it
        assert names.index("POD_NAMESPACE") < names.index(setting)
        m = DNS.match(e[setting]["value"])
        assert m, f"{setting}={e[setting]['value']}: dns:///<headless>.$(POD_NAMESPACE).svc.cluster.local:<port>"
        svc = get(target, "Service", m["host"])
        assert svc["spec"]["clusterIP"] == "None", f"{m['host']} is not headless: one connection, one pod"
        assert svc["spec"]["selector"] == {"app.kubernetes.io/name": peer}
        (port,) = svc["spec"]["ports"]
        assert port["port"] == int(m["port"]) == SERVICES[peer][0] and port["targetPort"] == "grpc"
        # the orchestrator follows each pod's health itself: pods not ready yet are published too
        assert svc["spec"]["publishNotReadyAddresses"] is True


@pytest.mark.parametrize("target,name", pairs())
def test_every_tokenway_setting_in_the_manifests_is_one_the_service_reads(target, name):
    service = "envoy" if name == "envoy" else name
    ours = {k for k in env(container(get(target, "Deployment", name))) if k.startswith("TOKENWAY_")}
    unknown = ours - tokenway_settings(service)
    assert not unknown, f"{name} does not read {sorted(unknown)}"


def _value(e: dict, name: str) -> str:
    return e[name]["value"]


@pytest.mark.parametrize("target,name", [(t, n) for t, n in pairs() if n in SERVICES])
def test_the_grace_period_covers_prestop_drain_and_grace(target, name):
    d = get(target, "Deployment", name)
    c, pod = container(d), d["spec"]["template"]["spec"]
    e = env(c)
    prefix = f"TOKENWAY_{name.upper()}"
    drain, grace = float(_value(e, f"{prefix}_DRAIN_SECONDS")), float(_value(e, f"{prefix}_GRACE_SECONDS"))
    argv = c["lifecycle"]["preStop"]["exec"]["command"]
    assert argv[0] == "sleep", argv
    pre_stop = float(argv[1])
    assert drain >= 1, "no NOT_SERVING window: calls keep arriving while the pod is removed from endpoints"
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + grace + 5, \
        f"{name}: SIGKILL would cut the drain (preStop {pre_stop} + drain {drain} + grace {grace})"


@pytest.mark.parametrize("target", TARGETS)
def test_metrics_ports_are_declared_enabled_and_annotated(target):
    for name, (_, metrics) in SERVICES.items():
        d = get(target, "Deployment", name)
        e = env(container(d))
        assert _value(e, f"TOKENWAY_{name.upper()}_METRICS_PORT") == str(metrics)
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(metrics)
        ports = {p["name"]: p for p in get(target, "Service", name)["spec"]["ports"]}
        assert ports["metrics"]["port"] == metrics and ports["metrics"]["targetPort"] == "metrics"


@pytest.mark.parametrize("target", TARGETS)
def test_tokenizer_and_inference_read_the_same_model_read_only(target):
    claims = set()
    for name in ("tokenizer", "inference"):
        d = get(target, "Deployment", name)
        c, pod = container(d), d["spec"]["template"]["spec"]
        assert _value(env(c), "TOKENWAY_MODEL") == "/models/model"
        (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/models/model"]
        assert mount["readOnly"] is True
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["persistentVolumeClaim"]["readOnly"] is True
        claims.add(volume["persistentVolumeClaim"]["claimName"])
    (claim,) = claims  # the same directory, so the tokenizer fingerprints match
    assert get(target, "PersistentVolumeClaim", claim)


@pytest.mark.parametrize("target", TARGETS)
def test_api_keys_are_required_and_replicas_share_a_postgresql_store(target):
    d = get(target, "Deployment", "orchestrator")
    e = env(container(d))
    assert _value(e, "TOKENWAY_ORCHESTRATOR_AUTH") in ("on", "true", "1", "yes")
    autoscaled = any(h["spec"]["scaleTargetRef"]["name"] == "orchestrator" for h in kinds(target, "HorizontalPodAutoscaler"))
    store = e["TOKENWAY_ORCHESTRATOR_STORE"]
    if autoscaled or d["spec"].get("replicas", 1) > 1:
        # several orchestrators: one shared PostgreSQL store, its URL (a password) from a Secret
        assert "value" not in store and store["valueFrom"]["secretKeyRef"]["key"] == "url", store
    else:  # SQLite: one orchestrator, never two at once (no surge), on a volume that survives restarts
        path = store.get("value", "")
        if path and not path.startswith("postgresql://"):
            assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"]["type"] == "Recreate"
            mounts = container(d)["volumeMounts"]
            (mount,) = [m for m in mounts if path.startswith(m["mountPath"] + "/")]
            (volume,) = [v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
            assert "persistentVolumeClaim" in volume
    assert not any("postgresql://" in str(v.get("value", "")) for v in e.values()), "a store URL in plain text"


def test_dev_is_one_cpu_replica_of_each_with_sqlite():
    for name in ("orchestrator", "tokenizer", "inference", "envoy"):
        assert get("dev", "Deployment", name)["spec"]["replicas"] == 1
    c = container(get("dev", "Deployment", "inference"))
    assert c["image"].split("/")[-1].startswith("tokenway-inference-cpu:")
    assert _value(env(c), "TOKENWAY_INFERENCE_ENGINE") == "transformers"
    assert "nvidia.com/gpu" not in str(c["resources"])
    assert _value(env(container(get("dev", "Deployment", "orchestrator"))), "TOKENWAY_ORCHESTRATOR_STORE").endswith(".db")
    assert not kinds("dev", "HorizontalPodAutoscaler") and not kinds("dev", "ScaledObject")


def test_prod_includes_gpu_autoscaling_network_policies_envoy_and_otel():
    kustomization = yaml.safe_load((K8S / "overlays" / "prod" / "kustomization.yaml").read_text())
    components = {p.rsplit("/", 1)[-1] for p in kustomization["components"]}
    assert {"gpu", "autoscaling", "monitoring", "network-policies", "envoy", "otel"} <= components
    # and their effects are in what it renders
    inference = get("prod", "Deployment", "inference")
    c = container(inference)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and _value(env(c), "TOKENWAY_INFERENCE_ENGINE") == "vllm"
    assert c["image"].rsplit("/", 1)[-1].startswith("inference-gpu:")
    pod = inference["spec"]["template"]["spec"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"]) and pod["nodeSelector"]
    (shm,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    (shm_volume,) = [v for v in pod["volumes"] if v["name"] == shm["name"]]
    assert shm_volume["emptyDir"]["medium"] == "Memory"
    assert "TOKENWAY_INFERENCE_THREADS" not in env(c)
    assert {h["spec"]["scaleTargetRef"]["name"] for h in kinds("prod", "HorizontalPodAutoscaler")} == {"orchestrator", "tokenizer"}
    for h in kinds("prod", "HorizontalPodAutoscaler"):
        assert h["spec"]["minReplicas"] >= 2, "the CPU tier keeps two replicas"
    assert [s["spec"]["scaleTargetRef"]["name"] for s in kinds("prod", "ScaledObject")] == ["inference"]
    assert {p["metadata"]["name"] for p in kinds("prod", "NetworkPolicy")} >= {"default-deny-ingress"}
    for name in SERVICES:
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" in env(container(get("prod", "Deployment", name)))
        assert "replicas" not in get("prod", "Deployment", name)["spec"], "apply would reset the autoscaler"


def _requests_gpu(target: str, name: str) -> bool:
    c = container(get(target, "Deployment", name))
    return "nvidia.com/gpu" in c["resources"].get("limits", {})


@pytest.mark.parametrize("target", TARGETS)
def test_gpu_pods_never_autoscale_on_cpu(target):
    for hpa in kinds(target, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]["name"]
        if _requests_gpu(target, ref) or ref == "inference":
            pytest.fail(f"HPA {hpa['metadata']['name']} scales {ref} on {hpa['spec']['metrics']}")
        for metric in hpa["spec"]["metrics"]:
            assert metric["resource"]["name"] == "cpu"
    for so in kinds(target, "ScaledObject"):
        types = {t["type"] for t in so["spec"]["triggers"]}
        assert not types & {"cpu", "memory"}, f"ScaledObject {so['metadata']['name']} triggers on {types}"


@pytest.mark.parametrize("target", ["prod", "every-component"])
def test_inference_scales_on_its_queue_metrics_in_its_own_namespace(target):
    (so,) = kinds(target, "ScaledObject")
    namespace = so["metadata"]["namespace"]
    queries = {t["name"]: t["metadata"]["query"] for t in so["spec"]["triggers"]}
    metrics = {n: re.findall(r"tokenway_inference_[a-z_]+", q) for n, q in queries.items()}
    assert metrics == {"waiting": ["tokenway_inference_waiting_requests"],
                       "running": ["tokenway_inference_running_requests"]}, metrics
    for q in queries.values():
        if target == "prod":  # the query names the namespace the overlay deploys into
            assert f'namespace="{namespace}"' in q, (q, namespace)
    assert so["spec"]["minReplicaCount"] >= 1, "a GPU replica takes minutes to start: never scale to zero"


@pytest.mark.parametrize("target", ["prod", "every-component"])
def test_network_policies_admit_only_the_callers_each_service_has(target):
    policies = {p["metadata"]["name"]: p["spec"] for p in kinds(target, "NetworkPolicy")}
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    by_pod = {}
    for spec in policies.values():
        who = spec["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        if who:
            by_pod[who] = spec["ingress"]
    for peer in ("tokenizer", "inference"):
        (rule,) = by_pod[peer]
        assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "orchestrator"}}}]
        assert rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    (rule,) = by_pod["orchestrator"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "envoy"}}} in rule["from"]
    (metrics,) = [s for s in policies.values() if s["podSelector"].get("matchLabels") == {"app.kubernetes.io/part-of": "tokenway"}]
    (rule,) = metrics["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    # every pod the policies name carries the labels they select on
    for name, d in deployments(target):
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == name and labels["app.kubernetes.io/part-of"] == "tokenway"


@pytest.mark.parametrize("target", TARGETS)
def test_images_are_pinned_and_built_from_this_repository(target):
    built = {p.name.removesuffix(".Dockerfile") for p in (ROOT / "deploy" / "images").glob("*.Dockerfile")}
    for name, d in deployments(target):
        image = container(d)["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {image}"
        short = repo.rsplit("/", 1)[-1].removeprefix("tokenway-")
        assert short in built, f"{name}: {image} is no image deploy/images builds ({sorted(built)})"


@pytest.mark.parametrize("target", TARGETS)
def test_every_service_and_budget_selects_pods_that_have_its_ports(target):
    pods = {n: d["spec"]["template"] for n, d in deployments(target)}
    for svc in kinds(target, "Service"):
        selector = svc["spec"]["selector"]
        matched = [n for n, t in pods.items() if selector.items() <= t["metadata"]["labels"].items()]
        assert matched, f"Service {svc['metadata']['name']} selects no pod"
        for n in matched:
            names = {p["name"] for p in container({"spec": {"template": pods[n]}})["ports"]}
            for port in svc["spec"]["ports"]:
                assert port["targetPort"] in names, f"{svc['metadata']['name']} -> {n}: no port {port['targetPort']}"
    for pdb in kinds(target, "PodDisruptionBudget"):
        labels = pdb["spec"]["selector"]["matchLabels"]
        assert any(labels.items() <= t["metadata"]["labels"].items() for t in pods.values())
        assert pdb["spec"]["maxUnavailable"] == 1, "minAvailable with one replica would block every drain"


def test_tls_makes_the_peers_require_the_orchestrators_certificate():
    """components/tls (in every-component): mTLS to tokenizer and inference, TLS to the orchestrator."""
    for name in SERVICES:
        c = container(get("every-component", "Deployment", name))
        e = env(c)
        prefix = f"TOKENWAY_{name.upper()}"
        assert _value(e, f"{prefix}_TLS_CERT").startswith("/etc/tokenway/tls/")
        if name != "orchestrator":
            assert f"{prefix}_TLS_CLIENT_CA" in e
    e = env(container(get("every-component", "Deployment", "orchestrator")))
    assert {"TOKENWAY_ORCHESTRATOR_PEER_TLS_CA", "TOKENWAY_ORCHESTRATOR_PEER_TLS_CERT",
            "TOKENWAY_ORCHESTRATOR_PEER_TLS_KEY", "TOKENWAY_ORCHESTRATOR_PEER_TLS_SERVER_NAME"} <= set(e)
    envoy = env(container(get("every-component", "Deployment", "envoy")))
    assert envoy["TOKENWAY_ENVOY_UPSTREAM_TLS_SERVER_NAME"]["value"] == e["TOKENWAY_ORCHESTRATOR_PEER_TLS_SERVER_NAME"]["value"]
    # the GPU component's longer startup applies on top of the TLS probe (components listed tls before gpu)
    startup = container(get("every-component", "Deployment", "inference"))["startupProbe"]
    assert "exec" in startup and startup["periodSeconds"] * startup["failureThreshold"] >= 1200


def test_envoy_reaches_every_orchestrator_and_reports_readiness_over_http():
    c = container(get("prod", "Deployment", "envoy"))
    e = env(c)
    host = _value(e, "TOKENWAY_ENVOY_ORCHESTRATOR_HOST")
    assert host == "orchestrator-headless.$(POD_NAMESPACE).svc.cluster.local"
    assert list(e).index("POD_NAMESPACE") < list(e).index("TOKENWAY_ENVOY_ORCHESTRATOR_HOST")
    svc = get("prod", "Service", "orchestrator-headless")
    assert svc["spec"]["clusterIP"] == "None"
    assert _value(e, "TOKENWAY_ORCHESTRATOR_PORT") == str(svc["spec"]["ports"][0]["port"]) == "50051"
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": int(_value(e, "TOKENWAY_ENVOY_PORT"))}


def test_the_model_copy_pod_writes_the_claim_the_services_read():
    (pod,) = [o for o in yaml.safe_load_all((K8S / "model-copy.yaml").read_text()) if o]
    spec = pod["spec"]
    assert spec["securityContext"]["runAsUser"] == 10001 and spec["securityContext"]["fsGroup"] == 10001
    (c,) = spec["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    (mount,) = c["volumeMounts"]
    assert mount["mountPath"] == "/models/model" and not mount.get("readOnly")
    (volume,) = spec["volumes"]
    served = get("dev", "Deployment", "inference")["spec"]["template"]["spec"]["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] in {v.get("persistentVolumeClaim", {}).get("claimName") for v in served}


@pytest.mark.parametrize("target", ["prod", "every-component"])
def test_prometheus_scrapes_the_metrics_port_of_every_service(target):
    (monitor,) = kinds(target, "PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    (expr,) = monitor["spec"]["selector"]["matchExpressions"]
    assert expr["key"] == "app.kubernetes.io/name" and set(expr["values"]) == set(SERVICES)
    for name in SERVICES:
        assert "metrics" in {p["name"] for p in container(get(target, "Deployment", name))["ports"]}
