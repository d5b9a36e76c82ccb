"""LookupEvents with CloudTrail's limits, through boto3."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from sandbox.aws.events import cloudtrail_record
from sandbox.aws.server import AwsSandbox

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def _record(sandbox: AwsSandbox, *, at: datetime, name: str = "OpenTunnel", **kw) -> dict:
    record = cloudtrail_record(
        event_source=kw.pop("event_source", "ec2-instance-connect.amazonaws.com"),
        event_name=name,
        region=kw.pop("region", "us-east-1"),
        identity=kw.pop(
            "identity",
            {
                "type": "AssumedRole",
                "principalId": "AROAEXAMPLE:alice",
                "arn": "arn:aws:sts::123456789012:assumed-role/alice/alice",
                "accountId": "123456789012",
                "accessKeyId": "ASIAEXAMPLE",
            },
        ),
        source_ip="127.0.0.1",
        user_agent="test",
        request_parameters=kw.pop("request_parameters", {"remotePort": "22"}),
        response_elements=None,
        resources=kw.pop("resources", None),
        at=at,
    )
    return sandbox.events.record(record)


@pytest.fixture
def cloudtrail(fresh_sandbox: AwsSandbox, client_for):
    return client_for(fresh_sandbox, "cloudtrail")


def test_two_lookup_attributes_are_refused(cloudtrail) -> None:
    with pytest.raises(ClientError) as raised:
        cloudtrail.lookup_events(
            LookupAttributes=[
                {"AttributeKey": "EventName", "AttributeValue": "OpenTunnel"},
                {"AttributeKey": "Username", "AttributeValue": "alice"},
            ]
        )
    assert raised.value.response["Error"]["Code"] == "InvalidLookupAttributesException"


def test_pages_of_fifty_newest_first_until_the_last(fresh_sandbox, cloudtrail) -> None:
    for i in range(120):
        _record(fresh_sandbox, at=T0 + timedelta(seconds=i))

    pages, token = [], None
    while True:
        answer = cloudtrail.lookup_events(**({"NextToken": token} if token else {}))
        pages.append(answer["Events"])
        token = answer.get("NextToken")
        if not token:
            break

    assert [len(p) for p in pages] == [50, 50, 20]
    times = [e["EventTime"] for page in pages for e in page]
    assert times == sorted(times, reverse=True)
    assert len({e["EventId"] for page in pages for e in page}) == 120


def test_max_results_above_fifty_is_refused(cloudtrail) -> None:
    with pytest.raises(ClientError) as raised:
        cloudtrail.lookup_events(MaxResults=51)
    assert raised.value.response["Error"]["Code"] == "InvalidMaxResultsException"


def test_next_token_is_only_valid_with_the_same_parameters(fresh_sandbox, cloudtrail) -> None:
    for i in range(3):
        _record(fresh_sandbox, at=T0 + timedelta(seconds=i))
    first = cloudtrail.lookup_events(MaxResults=1)

    with pytest.raises(ClientError) as raised:
        cloudtrail.lookup_events(
            MaxResults=1,
            NextToken=first["NextToken"],
            LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "OpenTunnel"}],
        )
    assert raised.value.response["Error"]["Code"] == "InvalidNextTokenException"


def test_start_and_end_time_are_inclusive(fresh_sandbox, cloudtrail) -> None:
    for offset in (0, 10, 20, 30):
        _record(fresh_sandbox, at=T0 + timedelta(seconds=offset), name=f"Call{offset}")

    answer = cloudtrail.lookup_events(
        StartTime=T0 + timedelta(seconds=10), EndTime=T0 + timedelta(seconds=20)
    )

    assert [e["EventName"] for e in answer["Events"]] == ["Call20", "Call10"]


def test_one_attribute_selects_and_events_carry_the_record(fresh_sandbox, cloudtrail) -> None:
    resources = [{"ARN": "arn:aws:ec2:us-east-1:123456789012:instance-connect-endpoint/eice-1"}]
    resources[0]["type"] = "AWS::EC2::InstanceConnectEndpoint"
    tunnel = _record(fresh_sandbox, at=T0, resources=resources)
    _record(fresh_sandbox, at=T0, name="SendSSHPublicKey")

    by_name = cloudtrail.lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "OpenTunnel"}]
    )["Events"]
    by_user = cloudtrail.lookup_events(
        LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": "alice"}]
    )["Events"]
    by_resource = cloudtrail.lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": resources[0]["ARN"]}]
    )["Events"]

    assert [e["EventId"] for e in by_name] == [tunnel["eventID"]]
    assert len(by_user) == 2
    assert [e["EventId"] for e in by_resource] == [tunnel["eventID"]]
    event = by_name[0]
    assert json.loads(event["CloudTrailEvent"]) == tunnel
    assert event["Username"] == "alice"
    assert event["AccessKeyId"] == "ASIAEXAMPLE"
    assert event["Resources"] == [
        {"ResourceType": "AWS::EC2::InstanceConnectEndpoint", "ResourceName": resources[0]["ARN"]}
    ]


def test_events_of_other_regions_are_not_returned(fresh_sandbox, client_for) -> None:
    _record(fresh_sandbox, at=T0, region="eu-west-1")
    east = client_for(fresh_sandbox, "cloudtrail").lookup_events()["Events"]
    west = client_for(fresh_sandbox, "cloudtrail", region="eu-west-1").lookup_events()["Events"]
    assert (len(east), len(west)) == (0, 1)


def test_more_than_two_calls_a_second_are_throttled(fresh_sandbox, cloudtrail) -> None:
    fresh_sandbox.faults.lookup_events_rate_per_s = 2.0
    outcomes = []
    started = time.monotonic()
    for _ in range(8):
        try:
            cloudtrail.lookup_events()
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    elapsed = time.monotonic() - started

    assert "ThrottlingException" in outcomes
    assert outcomes.count("ok") <= 2 + 2 * elapsed
    calls = fresh_sandbox.faults.counters.lookup_events_calls
    assert len(calls) == 8
    assert sum(c.accepted for c in calls) == outcomes.count("ok")
    time.sleep(0.6)
    cloudtrail.lookup_events()  # the bucket refills


def test_delivery_delay_hides_recent_events(client_for) -> None:
    with AwsSandbox(cloudtrail_delay_s=0.4) as sandbox:
        sandbox.faults.lookup_events_rate_per_s = 1000.0
        cloudtrail = client_for(sandbox, "cloudtrail")
        _record(sandbox, at=datetime.now(UTC))

        assert cloudtrail.lookup_events()["Events"] == []
        assert len(sandbox.events.all()) == 1
        time.sleep(0.5)
        assert len(cloudtrail.lookup_events()["Events"]) == 1
