"""The generated Kubernetes manifests and the compose GPU override: what users run to scale out."""

import pytest
import yaml

from template_testing.linters import checkov_clean, manifests_valid


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
