"""The API's JSON parser: DRF's, with the store's rules (core/json.py). A body that breaks one is a
400 problem+json naming the rule, never a 500 from deeper down."""

from __future__ import annotations

import codecs

from django.conf import settings
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

from core import json as strict_json


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            return strict_json.loads(text)
        except strict_json.JsonRuleError as exc:
            # Rendered as any invalid input is (core.problems): a 400 whose `errors.body` names the rule.
            # Not core.problems itself: DRF reads this parser while rest_framework.views, which
            # core.problems imports, is being set up.
            raise ValidationError({"body": [str(exc)]}) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
