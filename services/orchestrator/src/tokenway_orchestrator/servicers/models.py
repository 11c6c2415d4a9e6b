"""tokenway.v1.ModelService."""

from __future__ import annotations

from tokenway.v1 import model_pb2, model_pb2_grpc

from ..policy.auth import CALLER


class ModelServicer(model_pb2_grpc.ModelServiceServicer):
    def __init__(self, app) -> None:
        self.app = app

    def _fields(self) -> dict:
        m = self.app.orchestrator().model
        return {"id": m.name, "object": "model", "created": self.app.started_at, "owned_by": "tokenway",
                "max_model_len": m.context_length}

    async def ListModels(self, request, context):
        return model_pb2.ListModelsResponse(object="list", data=[model_pb2.Model(**self._fields())])

    async def GetModel(self, request, context):
        CALLER.get().authorize(request.model)
        self.app.orchestrator().check_model(request.model)
        return model_pb2.GetModelResponse(**self._fields())
