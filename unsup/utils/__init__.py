"""Utilities shared by the estimators: discovery of public estimators, input helpers."""

from unsup.utils.discovery import all_estimators
from unsup.utils.validation import upcast_if_overflow

__all__ = ["all_estimators", "upcast_if_overflow"]
