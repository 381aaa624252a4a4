"""Pinned attribute and metric names: OpenTelemetry GenAI conventions, seed ``llm.*``, ours.

Why our own constants: the GenAI semantic conventions are still "Development" status. The
upstream Python constants (``opentelemetry.semconv._incubating``) are incubating, several of
the names we need are already deprecated there (``gen_ai.system``,
``gen_ai.usage.prompt_tokens``, ``gen_ai.usage.cache_read_input_tokens``) and new ones keep
arriving under changed spellings. Exported data must not change name because a dependency
was upgraded, so every name agentledger writes or reads is spelled out once, here, and
pinned to the conventions as of semconv 1.37+ (GenAI provider/cache attributes).

Reading spans made by other instrumentations (OpenLLMetry, the official OpenAI
instrumentation, OpenInference) needs their current *and* older spellings; those aliases
are the ``*_ALIASES`` tuples below, tried in order.
"""

from __future__ import annotations

from typing import Final

# --- GenAI semantic conventions: span attributes -------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"  # deprecated predecessor of gen_ai.provider.name
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"  # includes cached tokens
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"  # includes reasoning
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
ERROR_TYPE: Final = "error.type"

# gen_ai.operation.name values
OP_CHAT: Final = "chat"
OP_EXECUTE_TOOL: Final = "execute_tool"
OP_INVOKE_AGENT: Final = "invoke_agent"
# gen_ai.token.type values
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"

# --- GenAI semantic conventions: client metrics --------------------------------------------
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_TOKEN_USAGE_UNIT: Final = "{token}"
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_OPERATION_DURATION_UNIT: Final = "s"
# The conventions' explicit bucket boundaries (ExplicitBucketBoundaries advice).
TOKEN_BOUNDS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
DURATION_BOUNDS_S: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip

# --- seed 001 span attributes (``llm.*``), kept so existing dashboards keep working ---------
LLM_MODEL: Final = "llm.model"
LLM_PROMPT_TOKENS: Final = "llm.prompt_tokens"
LLM_COMPLETION_TOKENS: Final = "llm.completion_tokens"
LLM_TOTAL_TOKENS: Final = "llm.total_tokens"
LLM_COST_USD: Final = "llm.cost_usd"
LLM_LATENCY_MS: Final = "llm.latency_ms"
LLM_TASK_ID: Final = "llm.task_id"
LLM_USER_ID: Final = "llm.user_id"
LLM_STATUS: Final = "llm.status"  # "success" or "error"

# --- agentledger's own attributes ------------------------------------------------------------
# Present on every span agentledger exports; its presence is how AgentledgerSpanProcessor
# recognises (and skips) our own spans, so nothing is counted twice.
AL_EVENT_ID: Final = "agentledger.event_id"
AL_KIND: Final = "agentledger.kind"
AL_NAME: Final = "agentledger.name"
AL_BOT_ID: Final = "agentledger.bot_id"
AL_USER_ID: Final = "agentledger.user_id"
AL_TASK_ID: Final = "agentledger.task_id"
AL_TENANT_ID: Final = "agentledger.tenant_id"
AL_SESSION_ID: Final = "agentledger.session_id"
AL_TAG_PREFIX: Final = "agentledger.tag."
AL_COST_USD: Final = "agentledger.cost_usd"  # float, for dashboards (may round)
AL_COST_USD_DECIMAL: Final = "agentledger.cost_usd.decimal"  # exact decimal string
AL_COST_SOURCE: Final = "agentledger.cost_source"
AL_PRICE_VERSION: Final = "agentledger.price_version"
AL_CACHE_WRITE_TOKENS: Final = "agentledger.cache_write_tokens"
ATTRIBUTION: Final = (
    ("bot_id", AL_BOT_ID),
    ("user_id", AL_USER_ID),
    ("task_id", AL_TASK_ID),
    ("tenant_id", AL_TENANT_ID),
    ("session_id", AL_SESSION_ID),
)
# Metadata keys that mark a ledger event imported from an OpenTelemetry span.
META_OTEL_TRACE_ID: Final = "otel.trace_id"
META_OTEL_SPAN_ID: Final = "otel.span_id"
META_OTEL_PARENT_SPAN_ID: Final = "otel.parent_span_id"
META_OTEL_SCOPE: Final = "otel.scope"
META_OTEL_SPAN_NAME: Final = "otel.span_name"

# --- reading other instrumentations' spans (first match wins) ------------------------------
# OpenInference (Arize) names.
OI_MODEL_NAME: Final = "llm.model_name"
OI_PROVIDER: Final = "llm.provider"
OI_SYSTEM: Final = "llm.system"

MODEL_ALIASES: Final = (GEN_AI_RESPONSE_MODEL, GEN_AI_REQUEST_MODEL, OI_MODEL_NAME, LLM_MODEL)
PROVIDER_ALIASES: Final = (GEN_AI_PROVIDER_NAME, GEN_AI_SYSTEM, OI_PROVIDER, OI_SYSTEM)
INPUT_ALIASES: Final = (
    GEN_AI_USAGE_INPUT_TOKENS,
    "gen_ai.usage.prompt_tokens",  # deprecated; OpenLLMetry <= 0.4x
    "llm.token_count.prompt",  # OpenInference
    "llm.usage.prompt_tokens",
    LLM_PROMPT_TOKENS,
)
OUTPUT_ALIASES: Final = (
    GEN_AI_USAGE_OUTPUT_TOKENS,
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "llm.usage.completion_tokens",
    LLM_COMPLETION_TOKENS,
)
CACHE_READ_ALIASES: Final = (
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "gen_ai.usage.cache_read_input_tokens",  # OpenLLMetry's older spelling
    "llm.token_count.prompt_details.cache_read",
)
CACHE_WRITE_ALIASES: Final = (
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
REASONING_ALIASES: Final = (
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    "gen_ai.usage.reasoning_tokens",
    "llm.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
)
