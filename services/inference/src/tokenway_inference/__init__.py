"""tokenway's inference service: runs the model, token ids in, token ids out."""
