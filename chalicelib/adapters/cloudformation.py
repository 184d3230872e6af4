"""CloudFormation port on boto3: snapshots of stacks and change sets, and the clean-ups the coordinator does."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.domain.clock import iso
from chalicelib.domain.deploys import ChangeSetSnapshot, StackSnapshot

MAX_EVENTS = 100


def _missing(error: ClientError) -> bool:
    """CloudFormation's way of saying a stack or change set does not exist."""
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    return code == "ChangeSetNotFound" or (code == "ValidationError" and "does not exist" in message)


def _time(value: Any) -> str | None:
    if isinstance(value, datetime):
        return iso(value)
    return str(value) if value else None


class BotoCloudFormation:
    """Reads stacks (with the first failed resource's reason) and change sets."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client

    def stack(self, name: str) -> StackSnapshot:
        """DescribeStacks (and, for a stack that failed, DescribeStackEvents for the reason)."""
        client = self._client()
        try:
            stacks = client.describe_stacks(StackName=name)["Stacks"]
        except ClientError as error:
            if _missing(error):
                return StackSnapshot(name, None)
            raise
        if not stacks:
            return StackSnapshot(name, None)
        data = stacks[0]
        status = str(data.get("StackStatus", ""))
        snapshot = StackSnapshot(
            name=name,
            status=status,
            reason=str(data.get("StackStatusReason") or ""),
            tags={str(t["Key"]): str(t["Value"]) for t in data.get("Tags") or []},
            outputs=[
                {"OutputKey": o["OutputKey"], "OutputValue": o.get("OutputValue", "")}
                for o in data.get("Outputs") or []
            ],
            last_updated=_time(data.get("LastUpdatedTime") or data.get("CreationTime")),
        )
        if "ROLLBACK" in status or status.endswith("_FAILED"):
            return StackSnapshot(**{**snapshot.__dict__, "failure_reason": self._first_failure(name)})
        return snapshot

    def _first_failure(self, name: str) -> str:
        """The reason of the earliest failed resource of the last operation (what a user needs to fix)."""
        try:
            events = self._client().describe_stack_events(StackName=name)["StackEvents"][:MAX_EVENTS]
        except ClientError:
            return ""
        failed = ""
        for event in events:  # newest first: stop at the start of the operation
            status = str(event.get("ResourceStatus", ""))
            if (
                event.get("ResourceType") == "AWS::CloudFormation::Stack"
                and status.endswith("_IN_PROGRESS")
                and (status.startswith(("UPDATE_IN", "CREATE_IN")))
            ):
                break
            reason = event.get("ResourceStatusReason")
            if status.endswith("_FAILED") and reason and event.get("ResourceType") != "AWS::CloudFormation::Stack":
                failed = f"{event.get('LogicalResourceId')}: {reason}"
        return failed

    def change_set(self, stack_name: str, change_set_name: str) -> ChangeSetSnapshot | None:
        """DescribeChangeSet (every page of changes)."""
        client = self._client()
        changes: list[dict[str, Any]] = []
        # IncludePropertyValues: the before and after values of each changed property, for the approver
        kwargs: dict[str, Any] = {
            "StackName": stack_name,
            "ChangeSetName": change_set_name,
            "IncludePropertyValues": True,
        }
        while True:
            try:
                page = client.describe_change_set(**kwargs)
            except ClientError as error:
                if _missing(error):
                    return None
                raise
            changes.extend(c["ResourceChange"] for c in page.get("Changes") or [] if "ResourceChange" in c)
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        return ChangeSetSnapshot(
            name=change_set_name,
            status=page.get("Status"),
            execution_status=page.get("ExecutionStatus"),
            reason=str(page.get("StatusReason") or ""),
            changes=changes,
        )

    def delete_change_set(self, stack_name: str, change_set_name: str) -> None:
        """DeleteChangeSet; a missing one is fine."""
        try:
            self._client().delete_change_set(StackName=stack_name, ChangeSetName=change_set_name)
        except ClientError as error:
            if not _missing(error):
                raise

    def delete_stack(self, name: str, role_arn: str) -> None:
        """DeleteStack with the stage's role."""
        kwargs: dict[str, Any] = {"StackName": name}
        if role_arn:
            kwargs["RoleARN"] = role_arn
        self._client().delete_stack(**kwargs)
