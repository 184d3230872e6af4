"""Cold start of the API, as a ratio in one run (issue: foundation).

A: a fresh interpreter imports ``app`` and serves one ``GET /stacks`` through chalice.test.Client.
B: a fresh interpreter imports boto3, creates a DynamoDB client and makes the same read directly.
Both run against the same emulator with one stack present; each child times itself from before
its first import to the answer. Runs are interleaved; medians are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

APP_CHILD = """
import time
t0 = time.perf_counter()
from chalice.test import Client
t_harness = time.perf_counter() - t0
import app
with Client(app.app) as client:
    response = client.http.get("/stacks")
assert response.status_code == 200, response.body
assert len(response.json_body["stacks"]) == 1
print(t_harness, time.perf_counter() - t0)
"""

# What Lambda itself does on a cold start: import the handler module, call it with the event.
LAMBDA_CHILD = """
import time
t0 = time.perf_counter()
import app
event = {"resource": "/stacks", "path": "/stacks", "httpMethod": "GET", "headers": {"Host": "bench"},
         "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
         "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False,
         "requestContext": {"resourcePath": "/stacks", "httpMethod": "GET", "requestId": "bench", "stage": "api"}}
class Context:
    function_name = "stagecoach-dev"
    aws_request_id = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:stagecoach-dev"
response = app.app(event, Context())
assert response["statusCode"] == 200, response
print(time.perf_counter() - t0)
"""

FLOOR_CHILD = """
import time, os
t0 = time.perf_counter()
import boto3
ddb = boto3.client("dynamodb")
items = ddb.query(TableName=os.environ["STAGECOACH_TABLE"], IndexName="gsi1",
                  KeyConditionExpression="gsi1pk = :k", ExpressionAttributeValues={":k": {"S": "STACKS"}},
                  Limit=25)["Items"]
assert len(items) == 1
print(time.perf_counter() - t0)
"""


def run_child(code: str, env: dict[str, str]) -> list[float]:
    """The seconds the child measured for itself (last line of its output)."""
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return [float(x) for x in out.stdout.strip().splitlines()[-1].split()]


def main() -> int:
    """Print medians and ``cold_start_ratio``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args()

    from chalicelib.local.control_plane import ControlPlane, chalice_stage_environment

    plane = ControlPlane("127.0.0.1", 0, 0).start(pump=False)
    try:
        from chalice.test import Client

        from app import app

        with Client(app) as client:
            body = {
                "name": "bench",
                "repository": {"provider": "github", "full_name": "acme/bench", "clone_url": "https://x.test/a.git"},
                "stages": [{"name": "prod"}],
            }
            created = client.http.post("/stacks", body=json.dumps(body), headers={"Content-Type": "application/json"})
            assert created.status_code == 201, created.body
        env = {**os.environ, **chalice_stage_environment("local"), "PYTHONDONTWRITEBYTECODE": "1"}
        for child in (APP_CHILD, LAMBDA_CHILD, FLOOR_CHILD):  # warm the file cache and .pyc files
            run_child(child, env)
        app_times, harness_times, lambda_times, floor_times = [], [], [], []
        for _ in range(args.runs):
            harness, total = run_child(APP_CHILD, env)
            app_times.append(total)
            harness_times.append(harness)
            lambda_times.append(run_child(LAMBDA_CHILD, env)[0])
            floor_times.append(run_child(FLOOR_CHILD, env)[0])
    finally:
        plane.stop()
    a, b = statistics.median(app_times), statistics.median(floor_times)
    h, lam = statistics.median(harness_times), statistics.median(lambda_times)
    print(f"runs: {args.runs} each, interleaved")
    print(f"A  app via chalice.test.Client, median s: {a:.3f} (of which importing chalice.test: {h:.3f})")
    print(f"A' app via its Lambda handler, median s:  {lam:.3f}")
    print(f"B  boto3 floor, median s:                 {b:.3f}")
    print(f"cold_start_ratio: {a / b:.2f}")
    print(f"cold_start_ratio_lambda_handler: {lam / b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
