import torch

from {{ cookiecutter.package_name }}.data import class_centers, make_blobs
from {{ cookiecutter.package_name }}.model import (
    N_CLASSES,
    N_FEATURES,
    Classifier,
    ModelConfig,
    load_checkpoint,
    save_checkpoint,
)


def test_forward_gives_one_logit_per_class():
    model = Classifier(ModelConfig(n_features=N_FEATURES, n_classes=N_CLASSES))
    assert model(torch.zeros(5, N_FEATURES)).shape == (5, N_CLASSES)


def test_probabilities_sum_to_one():
    probabilities = Classifier().predict_proba(torch.randn(8, N_FEATURES))
    torch.testing.assert_close(probabilities.sum(dim=-1), torch.ones(8))


def test_checkpoint_round_trip(tmp_path):
    model = Classifier(ModelConfig(hidden=16))
    path = save_checkpoint(model, tmp_path / "sub" / "model.pt", val_accuracy=0.5)
    loaded, metadata = load_checkpoint(path)
    assert loaded.config == model.config
    assert metadata == {"val_accuracy": 0.5}
    x = torch.randn(4, N_FEATURES)
    torch.testing.assert_close(loaded.predict_proba(x), model.predict_proba(x))
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_data_is_reproducible_and_labelled_by_nearest_center():
    a, b = make_blobs(256, seed=3), make_blobs(256, seed=3)
    torch.testing.assert_close(a.tensors[0], b.tensors[0])
    features, labels = a.tensors
    nearest = torch.cdist(features, class_centers(seed=3)).argmin(dim=-1)
    assert (nearest == labels).float().mean() > 0.9
