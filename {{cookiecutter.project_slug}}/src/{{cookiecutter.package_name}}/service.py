"""HTTP inference service: GET /health, POST /predict."""

from __future__ import annotations

import logging
import math
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import torch
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from .model import Classifier, load_checkpoint

log = logging.getLogger(__name__)

MAX_BATCH = 1024
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class PredictRequest(BaseModel):
    features: list[list[FiniteFloat]] = Field(
        min_length=1, max_length=MAX_BATCH, description="One row of features per example"
    )


class PredictResponse(BaseModel):
    predictions: list[int]
    probabilities: list[list[float]]


class Health(BaseModel):
    status: str
    device: str
    torch: str
    cuda: str | None


def model_path() -> Path:
    return Path(os.environ.get("MODEL_PATH", "artifacts/model.pt"))


def create_app(checkpoint: Path | None = None, device: str | None = None) -> FastAPI:
    checkpoint = checkpoint or model_path()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        model, metadata = load_checkpoint(checkpoint, dev)
        app.state.model = model
        log.info("loaded %s on %s (%s)", checkpoint, dev, metadata)
        yield

    app = FastAPI(title={{ cookiecutter.project_name | tojson }}, lifespan=lifespan)

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(
            status="ok", device=str(dev), torch=torch.__version__, cuda=torch.version.cuda
        )

    @app.post("/predict", response_model=PredictResponse)
    def predict(body: PredictRequest, request: Request) -> PredictResponse:
        model: Classifier = request.app.state.model
        width = model.config.n_features
        bad_rows = [i for i, row in enumerate(body.features) if len(row) != width]
        if bad_rows:
            raise HTTPException(
                status_code=422,
                detail=f"each row needs {width} features; rows {bad_rows[:10]} do not",
            )
        probabilities = model.predict_proba(torch.tensor(body.features, device=dev)).cpu()
        if not all(math.isfinite(p) for p in probabilities.flatten().tolist()):
            raise HTTPException(status_code=422, detail="input too large to score")
        return PredictResponse(
            predictions=probabilities.argmax(dim=-1).tolist(),
            probabilities=probabilities.tolist(),
        )

    return app


def serve(host: str, port: int, workers: int = 1) -> None:
    import uvicorn

    uvicorn.run(
        "{{ cookiecutter.package_name }}.service:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
    )
