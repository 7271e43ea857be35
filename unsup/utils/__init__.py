"""Utilities shared by the estimators: discovery of public estimators."""

from unsup.utils.discovery import all_estimators

__all__ = ["all_estimators"]
