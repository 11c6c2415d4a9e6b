"""tokenway's orchestrator: the public tokenway.v1 API in front of the tokenizer and inference tiers."""
