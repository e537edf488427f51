"""The generated Kubernetes manifests and the compose GPU override: what users run to scale out."""

import pytest
import yaml

from template_testing.linters import checkov_clean, kserve_problems, manifests_valid


@pytest.mark.parametrize("accelerator", ["cpu", "cuda"])
def test_manifests_render_validate_and_pass_checkov(bake, tmp_path, accelerator):
    project = bake(accelerator=accelerator, torch_version="2.14.1", project_name="Scale Me")
    documents = list(yaml.safe_load_all(manifests_valid(project)))
    rendered = tmp_path / "rendered"  # apart from the bake: checkov reads the whole folder
    rendered.mkdir()
    (rendered / "manifests.yaml").write_text(yaml.safe_dump_all(documents))
    checkov_clean(rendered)

    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert kinds >= {("Deployment", "api"), ("Service", "api"), ("PodDisruptionBudget", "api"),
                     ("HorizontalPodAutoscaler", "api"), ("Job", "train"), ("Service", "train"),
                     ("PersistentVolumeClaim", "model")}  # fmt: skip
    by_kind = {d["kind"]: d for d in documents if d["metadata"]["name"] in ("api", "train")}
    deployment, job = by_kind["Deployment"], by_kind["Job"]
    images = {
        c["image"] for w in (deployment, job) for c in w["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"registry.example.com/scale-me:0.1.0"}  # set once, in kustomization.yaml
    api = deployment["spec"]["template"]["spec"]["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    assert ("nvidia.com/gpu" in api["resources"]["limits"]) == (accelerator == "cuda")
    assert job["spec"]["completionMode"] == "Indexed"
    trainer = job["spec"]["template"]["spec"]["containers"][0]
    assert trainer["command"] == ["torchrun"]
    assert "--node-rank=$(JOB_COMPLETION_INDEX)" in trainer["args"]
    assert job["spec"]["template"]["spec"]["subdomain"] == "train"
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for w in (deployment, job)
        for v in w["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"model"}  # one model volume


@pytest.mark.parametrize("accelerator", ["cpu", "cuda"])
def test_the_kserve_component_renders_and_validates(bake, accelerator):
    """Uncommenting `components: [kserve]` swaps the api Deployment for an InferenceService that
    validates against KServe's published CRD schema (template_testing/schemas)."""
    project = bake(accelerator=accelerator, torch_version="2.14.1", project_name="Kserve Me")
    kustomization = project / "deploy" / "k8s" / "kustomization.yaml"
    text = kustomization.read_text()
    assert "# components: [kserve]" in text
    kustomization.write_text(text.replace("# components: [kserve]", "components: [kserve]"))
    documents = list(yaml.safe_load_all(manifests_valid(project)))
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert ("InferenceService", "api") in kinds and ("Deployment", "api") not in kinds
    (service,) = [d for d in documents if d["kind"] == "InferenceService"]
    assert service["metadata"]["namespace"] == "kserve-me"
    (container,) = service["spec"]["predictor"]["containers"]
    assert container["image"] == "registry.example.com/kserve-me:0.1.0"
    assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert ("nvidia.com/gpu" in container["resources"]["limits"]) == (accelerator == "cuda")


def test_the_kserve_schema_check_refuses_a_wrong_field():
    """The check behind the test above can fail: a misspelt and a mistyped field are caught."""
    service = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "x"},
        "spec": {"predictor": {"minReplica": 1, "containers": [{"name": "c", "image": 3}]}},
    }  # fmt: skip
    problems = kserve_problems(service)
    assert any("minReplica" in p for p in problems) and any("image" in p for p in problems)


def test_compose_gpu_override_trains_on_every_gpu(bake):
    project = bake(accelerator="cuda", torch_version="2.14.1", project_name="Many Gpus")
    override = yaml.safe_load((project / "compose.gpu.yaml").read_text())
    train = override["services"]["train"]
    assert train["entrypoint"] == [
        "torchrun", "--standalone", "--nproc-per-node=gpu", "-m", "many_gpus"
    ]  # fmt: skip
    assert train["shm_size"] == "8gb"
    devices = train["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
