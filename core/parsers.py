"""The API's JSON parser: DRF's, with the store's rules (core/json.py). A body that breaks one is a
400 problem+json naming the rule, never a 500 from deeper down."""

from __future__ import annotations

import codecs

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core import json as strict_json
from core.problems import invalid_input


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            return strict_json.loads(text)
        except strict_json.JsonRuleError as exc:
            raise invalid_input({"body": [str(exc)]}) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
