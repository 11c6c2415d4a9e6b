"""Who may call and how much: the request policy in front of the core, one concern per module.

`auth` (an interceptor: the API key, before any work), `gate` (per request: the model the key may use,
its limits, the orchestrator's admission queue, and the usage record every request ends with),
`admission` (bounded concurrency and queue with priority classes), `usage` (durable, group-committed
settlement of usage records and limit meters).
"""
