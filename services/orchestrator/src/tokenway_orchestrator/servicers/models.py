"""tokenway.v1.ModelService: the models ready now."""

from __future__ import annotations

from tokenway.v1 import model_pb2, model_pb2_grpc

from tokenway_common import errors

from ..policy.auth import CALLER


class ModelServicer(model_pb2_grpc.ModelServiceServicer):
    def __init__(self, app) -> None:
        self.app = app

    @staticmethod
    def _fields(entry) -> dict:
        return {"id": entry.name, "object": "model", "created": entry.created, "owned_by": "tokenway",
                "max_model_len": entry.core.model.context_length}

    async def ListModels(self, request, context):
        """The ready models the caller may use."""
        caller = CALLER.get()
        return model_pb2.ListModelsResponse(object="list", data=[
            model_pb2.Model(**self._fields(e)) for e in self.app.registry.served()
            if any(caller.allows(n) for n in (e.name, *e.spec.aliases))])

    async def GetModel(self, request, context):
        """A model by its name or an alias: NOT_FOUND when none is configured or discovered, UNAVAILABLE while
        it is not ready."""
        entry = self.app.registry.lookup(request.model)
        CALLER.get().authorize_any(request.model, entry.name)
        if not entry.ready:
            raise errors.Unavailable(f"The model '{entry.name}' has no ready replica now; retry shortly",
                                     reason="MODEL_UNAVAILABLE", retry_after=1.0, metadata={"model": entry.name})
        return model_pb2.GetModelResponse(**self._fields(entry))
