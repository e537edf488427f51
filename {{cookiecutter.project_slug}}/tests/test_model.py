"""The model seam (model.py): what it declares holds for what it builds, trains on and answers."""

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from {{ cookiecutter.package_name }}.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_for_serving,
    save_checkpoint,
)
from {{ cookiecutter.package_name }}.model import MODEL
from {{ cookiecutter.package_name }}.service import create_app

from serving import assert_answers, predict_json, random_inputs, weights_made_elsewhere


def test_predict_gives_the_declared_outputs():
    module = MODEL.build(MODEL.config_type()).eval()
    for rows in (1, 5):
        with torch.inference_mode():
            outputs = MODEL.predict(module, random_inputs(rows))
        assert MODEL.check_outputs(outputs, rows) is None


def test_checkpoint_round_trip(tmp_path):
    config = MODEL.config_type()
    module = MODEL.build(config).eval()
    path = save_checkpoint(module, config, tmp_path / "sub" / "model.pt", val_score=0.5)
    loaded, loaded_config, metadata = load_checkpoint(path)
    assert loaded_config == config
    assert metadata == {"val_score": 0.5}
    inputs = random_inputs(4)
    with torch.inference_mode():
        expected, got = MODEL.predict(module, inputs), MODEL.predict(loaded, inputs)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name])
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_training_data_is_reproducible_and_fits_the_model():
    """The dataset's inputs are what a request carries (the declared names, datatypes and
    shapes): training and serving share forward()'s pre-processing."""
    a, b = MODEL.dataset(64, seed=3), MODEL.dataset(64, seed=3)
    for (x_a, y_a), (x_b, y_b) in ((a[i], b[i]) for i in (0, 5)):
        for name, tensor in MODEL.named_inputs(x_a).items():
            torch.testing.assert_close(tensor, MODEL.named_inputs(x_b)[name])
        torch.testing.assert_close(y_a, y_b)
    inputs, targets = next(iter(torch.utils.data.DataLoader(a, batch_size=8)))
    named = MODEL.named_inputs(inputs)
    assert set(named) == {spec.name for spec in MODEL.inputs}
    for spec in MODEL.inputs:
        rows = named[spec.name]
        if spec.is_bytes:  # a list of bytes, as a request's BYTES reach the model
            assert len(rows) == 8 and all(type(value) is bytes for value in rows), spec.name
        else:
            assert rows.dtype == spec.dtype, spec.name
            assert spec.shape_problem(rows.shape) is None
        assert spec.value_problem(rows) is None
    outputs = MODEL.forward(MODEL.build(MODEL.config_type()), named)
    assert MODEL.loss(outputs, targets).isfinite()
    assert MODEL.score(outputs, targets).shape == (8,)


@pytest.mark.parametrize("kind", ["safetensors", "pt"])
def test_weights_made_elsewhere_serve_without_training(tmp_path, kind):
    path, module = weights_made_elsewhere(tmp_path, kind)
    inputs = random_inputs(3)
    with torch.inference_mode():
        expected = MODEL.predict(module, inputs)
    with TestClient(create_app(path, device="cpu")) as client:
        answer = client.post("/predict", json=predict_json(inputs))
        assert answer.status_code == 200, answer.text
        assert_answers(answer.json(), expected)


def test_safetensors_without_a_config_are_built_with_the_defaults(tmp_path):
    module = MODEL.build(MODEL.config_type())
    save_file(dict(module.state_dict()), tmp_path / "w.safetensors")
    _, config, metadata = load_checkpoint(tmp_path / "w.safetensors")
    assert config == MODEL.config_type() and metadata == {}


def other_shapes(folder):
    state = MODEL.build(MODEL.config_type()).state_dict()
    save_file({k: torch.zeros([d + 1 for d in v.shape]) for k, v in state.items()},
              folder / "w.safetensors")  # fmt: skip
    return folder / "w.safetensors"


def not_safetensors(folder):
    (folder / "w.safetensors").write_bytes(b"not safetensors at all")
    return folder / "w.safetensors"


def another_layout(folder):
    torch.save({"weights": [1, 2]}, folder / "w.pt")
    return folder / "w.pt"


BAD_WEIGHTS = {
    "other-shapes": (other_shapes, "weights do not fit"),
    "not-safetensors": (not_safetensors, "cannot read .* as safetensors"),
    "another-layout": (another_layout, "neither this project's checkpoint nor a state_dict"),
}


@pytest.mark.parametrize(("write", "message"), BAD_WEIGHTS.values(), ids=BAD_WEIGHTS)
def test_weights_that_cannot_serve_are_refused_in_one_line(tmp_path, write, message):
    with pytest.raises(CheckpointError, match=message) as refused:
        load_for_serving(write(tmp_path))
    assert "\n" not in str(refused.value)
