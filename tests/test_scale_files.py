"""The scale-out deployment files: the CloudFormation template is lint-clean, and its gateway and
worker policies allow exactly the SQS calls each role makes (read off the code, not a list by hand)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.test_ops_files import _CloudFormationLoader, tool

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "scale.yaml"


def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CloudFormationLoader)  # noqa: S506 - safe loader subclass
    return loaded


def actions(policy: str) -> set[str]:
    statements = template()["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"]
    return {action for statement in statements for action in statement["Action"]}


def sqs_calls_in(source: str) -> set[str]:
    """IAM actions of the SQS operations `stores/sqs_ingress.py` calls (`_call("receive_message", ...)`)."""
    names = re.findall(r'_call\(\s*"([a-z_]+)"', source) + re.findall(r'"([a-z_]+)", QueueUrl', source)
    return {"sqs:" + "".join(part.title() for part in name.removesuffix("_batch").split("_")) for name in names}


def test_the_scale_template_is_cfn_lint_clean() -> None:
    result = subprocess.run([tool("cfn-lint"), str(TEMPLATE)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_roles_may_make_the_sqs_calls_the_code_makes_and_no_more() -> None:
    called = sqs_calls_in((ROOT / "stores" / "sqs_ingress.py").read_text())
    assert {"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} <= called
    worker = {action for action in actions("WorkerPolicy") if action.startswith("sqs:")}
    gateway = {action for action in actions("GatewayPolicy") if action.startswith("sqs:")}
    assert worker | gateway == called
    assert gateway == {"sqs:SendMessage", "sqs:GetQueueAttributes"}
    assert "sqs:SendMessage" not in worker
    assert "dynamodb:PutItem" not in actions("GatewayPolicy")
