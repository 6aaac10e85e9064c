"""The black-box LLM: an OpenAI-compatible HTTP client with a persistent cache, and the embedded server.

Example:
    >>> from shared.llm import LLMConfig, LLMClient
    >>> LLMConfig(base_url="http://127.0.0.1:8080/v1").identity
    'http://127.0.0.1:8080/v1'
"""

from shared.llm.cache import ResponseCache, request_key
from shared.llm.client import BudgetExhausted, CallBudget, LLMClient, LLMConfig, LLMStats

__all__ = ["LLMConfig", "LLMClient", "LLMStats", "CallBudget", "BudgetExhausted", "ResponseCache", "request_key"]
