"""The orchestrator's request pipeline; imports no gRPC."""
