"""``/v1`` routes of A/B experiments: create, list, stop, report; and online evaluation.

Creating or stopping an experiment changes what every shopper is served, so it takes an admin
key, as training does; reading reports is a read. The recommendations route
(:mod:`.behaviour_routes`) is where an experiment is served: its answers carry ``arm`` and
``impression_id`` while one runs, and ``POST /v1/events`` takes the ``impression_id`` back.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from stylesense.experiments.store import METRICS
from stylesense.serving.app import ADMIN, READ, server_of

router = APIRouter(prefix="/v1", tags=["experiments"])

Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                           description="the experiment's name")]


class ExperimentIn(BaseModel):
    """``POST /v1/experiments``: arms are trained model names, the first the control."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    arms: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=2, max_length=16)
    split: list[float] | None = Field(None, description="traffic weights per arm, e.g. [50, 50] (default: equal)")
    metric: str = Field("purchase", description=f"the metric that decides: {', '.join(METRICS)}")
    window_hours: float = Field(24.0, gt=0, le=24 * 90, description="how long after an impression events count")


@router.post("/experiments", dependencies=[ADMIN], status_code=201)
async def create_experiment(request: Request, body: ExperimentIn) -> JSONResponse:
    """Start an experiment (one runs at a time: 409 while another does); from the next
    request on, shoppers are served by their arm's model."""
    experiments = server_of(request).ss.experiments
    created = await run_in_threadpool(experiments.create, body.name, body.arms, body.split, metric=body.metric,
                                      window_hours=body.window_hours)
    return JSONResponse(created.to_dict(), status_code=201, headers={"Location": f"/v1/experiments/{created.name}/report"})


@router.get("/experiments", dependencies=[READ])
async def list_experiments(request: Request) -> dict[str, Any]:
    """Every experiment, newest first."""
    found = await run_in_threadpool(server_of(request).ss.experiments.list)
    return {"experiments": [e.to_dict() for e in found]}


@router.post("/experiments/{name}/stop", dependencies=[ADMIN])
async def stop_experiment(request: Request, name: Name) -> dict[str, Any]:
    """Stop the experiment: shoppers get the served model again (stopping twice is harmless)."""
    return (await run_in_threadpool(server_of(request).ss.experiments.stop, name)).to_dict()


@router.get("/experiments/{name}/report", dependencies=[READ])
async def experiment_report(request: Request, name: Name) -> dict[str, Any]:
    """Per arm: shoppers, impressions, click-through, add-to-cart, conversion, negative-feedback
    and return rates, revenue per shopper and per impression, each with a 95 % interval and a
    test against the control (z-test, Welch); the sample-ratio check; the winner, if any."""
    return (await run_in_threadpool(server_of(request).ss.experiments.report, name)).to_dict()


@router.get("/online-evaluation", dependencies=[READ])
async def online_evaluation(
    request: Request,
    window_hours: Annotated[float, Query(gt=0, le=24 * 90, description="the rolling window")] = 24.0,
) -> dict[str, Any]:
    """Per model, the recommendations served in the window and the share with positive
    feedback (a credited view, click, like, cart or purchase), as Gorse's online evaluation."""
    rates = await run_in_threadpool(server_of(request).ss.experiments.online, window_hours)
    return {"window_hours": window_hours, "models": [r.to_dict() for r in rates]}
