"""Feature extraction: run a frozen backbone over items in batches (see :mod:`.runner`)."""
from .runner import ExtractItem, ExtractSummary, caption_and_embed, extract

__all__ = ["ExtractItem", "ExtractSummary", "extract", "caption_and_embed"]
