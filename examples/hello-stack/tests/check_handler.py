"""Unit tests of the example handler (run by the buildspec with unittest).

Named ``check_*.py`` so that Stagecoach's own pytest run does not collect them.
"""

import json
import os
import unittest
from unittest import mock

from hello.handler import greeting, handler


class GreetingTest(unittest.TestCase):
    def test_default_name(self):
        self.assertEqual(greeting(), "Hello, world!")
        self.assertEqual(greeting("  "), "Hello, world!")

    def test_name(self):
        self.assertEqual(greeting("Ada"), "Hello, Ada!")


class HandlerTest(unittest.TestCase):
    def test_returns_json_with_stage_and_sha(self):
        with mock.patch.dict(os.environ, {"STAGE": "prod", "SHA": "abc123"}):
            response = handler({"queryStringParameters": {"name": "Ada"}}, None)
        self.assertEqual(response["statusCode"], 200)
        body = json.loads(response["body"])
        self.assertEqual(body, {"message": "Hello, Ada!", "stage": "prod", "sha": "abc123"})

    def test_no_query_string(self):
        body = json.loads(handler({}, None)["body"])
        self.assertEqual(body["message"], "Hello, world!")


if __name__ == "__main__":
    unittest.main()
