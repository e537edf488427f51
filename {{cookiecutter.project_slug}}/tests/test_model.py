"""The model seam (model.py): what it declares holds for what it builds, trains on and answers."""

import torch

from {{ cookiecutter.package_name }}.checkpoint import load_checkpoint, save_checkpoint
from {{ cookiecutter.package_name }}.model import MODEL

from serving import random_inputs


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
    a, b = MODEL.dataset(64, seed=3), MODEL.dataset(64, seed=3)
    (x_a, y_a), (x_b, y_b) = a[5], b[5]
    torch.testing.assert_close(x_a, x_b)
    torch.testing.assert_close(y_a, y_b)
    module = MODEL.build(MODEL.config_type())
    inputs = torch.stack([a[i][0] for i in range(8)])
    targets = torch.stack([a[i][1] for i in range(8)])
    outputs = module(inputs)
    assert MODEL.loss(outputs, targets).isfinite()
    assert MODEL.score(outputs, targets).shape == (8,)
