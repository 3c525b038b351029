"""Differential test of `probabilistic_sampler` against the collector contrib v0.161.0 (the
tests/peers/otelcol161 build): the same 300 log records (trace ids, `from_attribute` values,
`sampling.randomness`/`sampling.threshold` attributes, a priority attribute) and the same 400 spans (random trace ids, some with a `tracestate`
carrying `rv`/`th`, another vendor's member or a malformed value, some with
`sampling.priority`, one with an empty trace id) through each mode; the spans each system
keeps, and their `tracestate`, must be the same, so agents and gateways of a mixed fleet make
the same decision."""

import json
import random

import pytest

from test_diff_processors import merged, run_system

RNG = random.Random(7)


def spans():
    out = []
    for i in range(400):
        tid = "%032x" % RNG.getrandbits(128)
        s = {"traceId": tid, "spanId": "%016x" % (i + 1), "name": f"op-{i}", "kind": 2,
             "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000000001000"}
        k = i % 20
        if k == 1:
            s["traceState"] = "vendor=abc"
        elif k == 2:
            s["traceState"] = "ot=rv:%014x" % RNG.getrandbits(56)
        elif k == 3:
            s["traceState"] = "ot=th:c;rv:%014x,other=1" % RNG.getrandbits(56)
        elif k == 4:
            s["traceState"] = "ot=th:zz"
        elif k == 5:
            s["attributes"] = [{"key": "sampling.priority", "value": {"intValue": "1"}}]
        elif k == 6:
            s["attributes"] = [{"key": "sampling.priority", "value": {"intValue": "0"}}]
        elif k == 7:
            s["attributes"] = [{"key": "sampling.priority", "value": {"stringValue": "2.5"}}]
        elif k == 8:
            s["traceState"] = "ot=th:8"
        out.append(s)
    out.append({"spanId": "00000000000000ff", "name": "no-trace-id", "kind": 1})
    return out


SPANS = spans()


def logs():
    out = []
    for i in range(300):
        rec = {"timeUnixNano": "1700000000000000000", "body": {"stringValue": f"log {i}"},
               "attributes": [{"key": "i", "value": {"intValue": str(i)}}]}
        k = i % 12
        if k != 1:
            rec["traceId"] = "%032x" % RNG.getrandbits(128)
        if k == 1:
            rec["attributes"].append({"key": "user.id", "value": {"stringValue": "u%d" % RNG.getrandbits(20)}})
        elif k == 2:
            rec["attributes"].append({"key": "sampling.randomness", "value": {"stringValue": "%014x" % RNG.getrandbits(56)}})
        elif k == 3:
            rec["attributes"].append({"key": "sampling.threshold", "value": {"stringValue": "c"}})
        elif k == 4:
            rec["attributes"].append({"key": "sampling.threshold", "value": {"stringValue": "zz"}})
        elif k == 5:
            rec["attributes"].append({"key": "prio", "value": {"intValue": "90"}})
        elif k == 6:
            rec["attributes"].append({"key": "prio", "value": {"doubleValue": 0.5}})
        elif k == 7:
            rec["attributes"].append({"key": "user.id", "value": {"intValue": str(RNG.getrandbits(30))}})
        out.append(rec)
    return out


LOGS = logs()


def corpus(signal):
    res = {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]}
    if signal == "logs":
        return {"resourceLogs": [{"resource": res, "scopeLogs": [{"logRecords": LOGS}]}]}
    return {"resourceSpans": [{"resource": res, "scopeSpans": [{"spans": SPANS}]}]}


def sampler(**cfg):
    return (["traces"], [("probabilistic_sampler", cfg)])


def log_sampler(**cfg):
    return (["logs"], [("probabilistic_sampler", cfg)])


CASES = {
    "hash_seed_25": sampler(sampling_percentage=25),
    "hash_seed_10_seed_22": sampler(sampling_percentage=10, hash_seed=22),
    "hash_seed_33_3_open": sampler(sampling_percentage=33.3, hash_seed=5, fail_closed=False),
    "hash_seed_100": sampler(sampling_percentage=100),
    "zero_percent_with_priority": sampler(sampling_percentage=0),
    "proportional_30": sampler(sampling_percentage=30, mode="proportional"),
    "proportional_50_precision_2": sampler(sampling_percentage=50, mode="proportional", sampling_precision=2),
    "equalizing_40": sampler(sampling_percentage=40, mode="equalizing"),
    "equalizing_12_5_open": sampler(sampling_percentage=12.5, mode="equalizing", fail_closed=False),
    "logs_hash_30": log_sampler(sampling_percentage=30),
    "logs_trace_id_then_attribute_seed_3": log_sampler(sampling_percentage=50, hash_seed=3, from_attribute="user.id"),
    "logs_record_attribute_open": log_sampler(sampling_percentage=40, attribute_source="record",
                                              from_attribute="user.id", fail_closed=False),
    "logs_priority_10": log_sampler(sampling_percentage=10, sampling_priority="prio"),
    "logs_proportional_40": log_sampler(sampling_percentage=40, mode="proportional"),
    "logs_equalizing_20_priority": log_sampler(sampling_percentage=20, mode="equalizing", sampling_priority="prio"),
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diff_sampler")
    return (run_system("otelcol", tmp, CASES, corpus)[0], run_system("sightline", tmp, CASES, corpus)[0])


def kept(out, case):
    if case.startswith("logs_"):
        rows = merged(out.get(f"/{case}/v1/logs", []))
        return sorted((r["item"]["body"]["stringValue"],
                       sorted((a["key"], json.dumps(a["value"], sort_keys=True)) for a in r["item"].get("attributes", [])))
                      for r in rows)
    rows = merged(out.get(f"/{case}/v1/traces", []))
    return sorted((r["item"]["spanId"], r["item"].get("traceState", "")) for r in rows)


@pytest.mark.parametrize("case", sorted(CASES))
def test_sampler_keeps_the_same_spans_as_the_collector(case, outputs):
    col, sl = outputs
    c, s = kept(col, case), kept(sl, case)
    assert s == c, f"{case}: {len(s)} kept by Sightline, {len(c)} by the collector; " \
                   f"only Sightline: {sorted(set(s) - set(c))[:5]}, only collector: {sorted(set(c) - set(s))[:5]}"
    total = len(LOGS) if case.startswith("logs_") else len(SPANS) + 1
    if case != "hash_seed_100":
        assert 0 < len(c) < total, f"{case}: {len(c)} of {total} kept: the case proves nothing"
