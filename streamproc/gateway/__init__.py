"""The HTTP gateway: a front door over the Kafka contract for clients that cannot write to Kafka.

``streamproc gateway`` runs :func:`streamproc.gateway.service.serve`. Replicas are stateless:
everything they share (API keys stored in Redis, rate-limit buckets, accepted video ids and
their Idempotency-Keys) lives in Redis, every accepted request is a record in the prompts
topic, and answers come from the result ledger. ``docs/gateway.md`` describes the API.

::

    http ──► access log + metrics (middleware)
               │
               ▼
             auth (Bearer key → tenant)  ──► 401 / 403
               │
               ▼
             rate limits (Redis GCRA, per tenant)  ──► 429 + Retry-After
               │
               ▼
     POST    submit: body → PromptEvent (the workers' own decoder and limits) ──► 400/413/422
               │
               ▼
             videos: reserve the id (Idempotency-Key) ──► 409 when reused for another body
               │
               ▼
             producer: prompts topic, acks=all ──► 202 only after the broker has the record
     GET     videos + ledger + status events ──► state

Beside the requests, two supervised loops per replica: the status-topic reader
(:mod:`~streamproc.gateway.status`) and the webhook deliveries
(:mod:`~streamproc.gateway.webhooks`).
"""
