"""Differential test of `probabilistic_sampler` against the collector contrib v0.161.0 (the
tests/peers/otelcol161 build): the same 400 spans (random trace ids, some with a `tracestate`
carrying `rv`/`th`, another vendor's member or a malformed value, some with
`sampling.priority`, one with an empty trace id) through each mode; the spans each system
keeps, and their `tracestate`, must be the same, so agents and gateways of a mixed fleet make
the same decision."""

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


def corpus(signal):
    assert signal == "traces"
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                               "scopeSpans": [{"spans": SPANS}]}]}


def sampler(**cfg):
    return (["traces"], [("probabilistic_sampler", cfg)])


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
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diff_sampler")
    return (run_system("otelcol", tmp, CASES, corpus)[0], run_system("sightline", tmp, CASES, corpus)[0])


def kept(out, case):
    rows = merged(out.get(f"/{case}/v1/traces", []))
    return sorted((r["item"]["spanId"], r["item"].get("traceState", "")) for r in rows)


@pytest.mark.parametrize("case", sorted(CASES))
def test_sampler_keeps_the_same_spans_as_the_collector(case, outputs):
    col, sl = outputs
    c, s = kept(col, case), kept(sl, case)
    assert s == c, f"{case}: {len(s)} kept by Sightline, {len(c)} by the collector; " \
                   f"only Sightline: {sorted(set(s) - set(c))[:5]}, only collector: {sorted(set(c) - set(s))[:5]}"
    if case not in ("hash_seed_100",):
        assert 0 < len(c) < len(SPANS) + 1 or case == "zero_percent_with_priority", case
