"""Operations files: the CloudWatch alarms template and the CI workflow lint clean, and watch or run
what the assistant and the local CI really have."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from conf.settings import MetricsSettings
from ops.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
ALARMS = ROOT / "deploy" / "cloudwatch-alarms.yaml"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def tool(name: str) -> str:
    """The venv's copy of a command-line tool, else the one on PATH; skips the test if neither."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -r requirements-dev.txt installs it)")
    return found


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub): each tag's value is kept as it is written."""


def _keep_tagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_CloudFormationLoader.add_multi_constructor("!", _keep_tagged)


def template() -> dict[str, Any]:
    return yaml.load(ALARMS.read_text(encoding="utf-8"), Loader=_CloudFormationLoader)  # type: ignore[no-any-return]  # noqa: S506 - SafeLoader subclass


def emitted_metrics() -> set[tuple[str, frozenset[str]]]:
    """(metric name, dimension names) of every line the assistant's metrics write."""
    metrics = Metrics(MetricsSettings())
    with capture_logs() as lines:
        metrics.turn(1200, conversation_id="1", steps=2, ok=True)
        metrics.model_call(10, ok=False, provider="openai")
        metrics.tool_call(10, ok=True, server="time", tool="now")
        metrics.telegram_retry(3, method="sendMessage", reason="flood_control")
        metrics.actors_alive(3)
        metrics.mailbox_depth(1, actor_kind="conversation")
    found = set()
    for line in lines:
        for directive in line["_aws"]["CloudWatchMetrics"]:
            dimensions = frozenset(directive["Dimensions"][0])
            found |= {(metric["Name"], dimensions) for metric in directive["Metrics"]}
    return found


# ---- the alarms template ----


@pytest.mark.slow
def test_the_alarms_template_is_cfn_lint_clean() -> None:
    result = subprocess.run([tool("cfn-lint"), str(ALARMS)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_alarms_watch_metrics_the_assistant_emits_with_their_dimensions() -> None:
    emitted = emitted_metrics()
    resources = template()["Resources"]
    watched: set[tuple[str, frozenset[str]]] = set()
    for resource in resources.values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        properties = resource["Properties"]
        stats = [query["MetricStat"]["Metric"] for query in properties.get("Metrics", []) if "MetricStat" in query]
        if "MetricName" in properties:
            stats.append(properties)
        for metric in stats:
            watched.add((metric["MetricName"], frozenset(d["Name"] for d in metric.get("Dimensions", []))))
        for query in properties.get("Metrics", []):
            schema = r"SELECT \w+\((\w+)\) FROM SCHEMA\(\"\$\{Namespace\}\", ([\w, ]+)\) .*"
            insights = re.fullmatch(schema, query.get("Expression", ""))
            if insights:
                watched.add((insights.group(1), frozenset(insights.group(2).split(", "))))
    from_logs = {("HealthCheckFailures", frozenset())}  # made by the template's own metric filter
    assert {name for name, _ in watched} >= {"TurnLatency", "ModelErrors", "TelegramRetries", "MailboxDepth"}
    assert watched - from_logs <= emitted, f"alarms watch metrics no line has: {sorted(watched - from_logs - emitted)}"


def test_the_health_alarm_counts_the_log_line_the_gateway_writes_when_healthz_fails() -> None:
    pattern = template()["Resources"]["HealthCheckFailuresFilter"]["Properties"]["FilterPattern"]
    event = re.fullmatch(r'\{ \$\.event = "(\w+)" \}', pattern)
    assert event, pattern
    gateway = (ROOT / "channels" / "telegram" / "gateway.py").read_text(encoding="utf-8")
    assert f'log.error("{event.group(1)}"' in gateway


def test_every_alarm_notifies_the_topic_and_names_itself_after_the_service() -> None:
    resources = template()["Resources"]
    alarms = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert len(alarms) == 6
    for properties in alarms.values():
        assert properties["AlarmActions"] == ["AlarmTopic"]
        assert properties["AlarmName"].startswith("${Service}-")
    assert resources["AlarmTopic"]["Properties"]["Subscription"] == [{"Protocol": "email", "Endpoint": "AlarmEmail"}]


# ---- the CI workflow ----


def test_the_ci_workflow_is_valid_against_githubs_schema() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflow_runs_the_local_cis_test_command_lint_types_and_the_image_build() -> None:
    local = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = local.split("# The README's test command:\n", 1)[1].splitlines()[0].removesuffix(" || status=1")
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert set(workflow[True]) == {"push", "pull_request"}  # YAML 1.1 reads the key `on` as True
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    for command in (
        test_command,
        ".venv/bin/ruff check .",
        ".venv/bin/ruff format --check .",
        ".venv/bin/mypy",
        ".venv/bin/hadolint Dockerfile",
    ):
        assert any(command in run for run in runs), command
    assert any(run.startswith("docker build") for run in runs)
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    setups = [step for step in steps if "setup-python" in step.get("uses", "")]
    assert setups
    assert all(step["with"]["cache"] == "pip" for step in setups)
