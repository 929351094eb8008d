"""The baseline: activation functions over HTTP as a typical tutorial reader writes them.

pydantic list[float] in, np.array, the one-line formula, {"y": y.tolist()} out
through FastAPI's default encoder.  Kept deliberately plain; only used by the
benchmark, never by the service.
"""

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class ActivationRequest(BaseModel):
    activation: str
    x: list[float]


FUNCTIONS = {
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(0, x),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "softmax": lambda x: np.exp(x - x.max()) / np.exp(x - x.max()).sum(),
}


@app.post("/activate")
def activate(request: ActivationRequest):
    x = np.array(request.x)
    y = FUNCTIONS[request.activation](x)
    return {"activation": request.activation, "y": y.tolist()}


@app.get("/healthz")
def healthz():
    return {"status": "ok"}
