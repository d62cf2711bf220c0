"""The narrow, documented exception types raised by the tailor package."""

from __future__ import annotations


class TailorError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(TailorError, ValueError):
    """A setting is missing or has a value of the wrong type or range."""


class CatalogValidationError(TailorError, ValueError):
    """A catalog file broke one or more format rules.

    ``issues`` lists every problem found (file, line, rule, message), so one run of the validator tells the
    user everything to fix rather than one problem per upload.
    """

    def __init__(self, issues: list) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class QADatasetError(TailorError, ValueError):
    """A QA dataset file is malformed (missing fields, empty answers, duplicates, bad encoding)."""


class CatalogKeyError(TailorError, ValueError):
    """An S3 key given for a catalog sync (a Param, a setting) lies outside what the sync may read or move."""
