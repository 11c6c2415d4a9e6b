"""tokenway's tokenizer service."""
