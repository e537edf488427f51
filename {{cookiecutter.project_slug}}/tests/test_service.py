import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.data import class_centers
from {{ cookiecutter.package_name }}.service import create_app


@pytest.fixture(scope="module")
def client(checkpoint):
    with TestClient(create_app(checkpoint, device="cpu")) as test_client:
        yield test_client


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_predicts_the_class_of_each_center(client):
    centers = class_centers().tolist()
    response = client.post("/predict", json={"features": centers})
    assert response.status_code == 200
    body = response.json()
    assert body["predictions"] == list(range(len(centers)))
    assert all(abs(sum(row) - 1) < 1e-4 for row in body["probabilities"])


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"features": []},
        {"features": [[1.0, 2.0]]},
        {"features": [["a", "b", "c", "d"]]},
        {"features": "not a list"},
    ],
)
def test_bad_input_is_a_client_error(client, payload):
    response = client.post("/predict", json=payload)
    assert response.status_code == 422


def test_missing_checkpoint_fails_start_up(tmp_path):
    with pytest.raises(FileNotFoundError), TestClient(create_app(tmp_path / "none.pt")):
        pass
