"""`sightline catalog lint` as a team's CI step runs it: a broken catalog (a service defined in
two files, an unknown team, a bad regex and glob, a shadowed rule, a team without contact)
gives every problem with its file and line in the three formats and exits 1; the repository's
own catalog is clean (exit 0); a usage error exits 2."""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def lint(*args, cwd=None):
    return subprocess.run([os.environ["SIGHTLINE_BIN"], "catalog", "lint", *args],
                          capture_output=True, text=True, cwd=cwd)


def broken(tmp):
    (tmp / "catalog").mkdir()
    (tmp / "catalog" / "payments.yaml").write_text("""teams:
  - name: payments
    contact: "#payments"
    oncall: "pagerduty:PAY"
services:
  - name: checkout
    team: payments
rules:
  - match: { service.name: "pay-*" }
    team: payments
  - match: { service.name: pay-api }
    team: payments
""")
    (tmp / "catalog" / "search.yaml").write_text("""teams:
  - name: search
services:
  - name: checkout
    team: search
  - name: indexer
    team: serch
rules:
  - match: { service.name: "regex:search-(api" }
    team: search
  - match: { service.name: "search-[api" }
    team: search
""")
    repo = tmp / "repos" / "cart"
    repo.mkdir(parents=True)
    (repo / "catalog-info.yaml").write_text("""apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: cart
spec:
  owner: group:default/storefront
""")
    return tmp


def test_every_problem_with_its_file_and_line(tmp_path):
    d = broken(tmp_path)
    p, s = d / "catalog" / "payments.yaml", d / "catalog" / "search.yaml"
    out = lint(str(d / "catalog"), str(d / "repos"))
    assert out.returncode == 1, out
    lines = out.stdout.splitlines()
    assert lines == [
        f'{s}:4: error: duplicate service "checkout" (first defined at {p}:6) [duplicate-service]',
        f'{s}:7: error: service "indexer": unknown team "serch" (did you mean "search"?) [unknown-team]',
        f'{s}:9: error: rule 3: bad regex "search-(api" for `service.name`: unclosed group [bad-regex]',
        f'{s}:11: error: rule 4: bad glob "search-[api" for `service.name`: unclosed character class; missing \']\' [bad-glob]',
        f'{p}:11: warning: rule 2 never applies: everything it matches is matched first by rule 1 at {p}:9 [shadowed-rule]',
        f'{s}:2: warning: team "search" has no contact (who do people ask about its telemetry?) [team-without-contact]',
        f'{s}:2: warning: team "search" has no oncall (who do people ask about its telemetry?) [team-without-oncall]',
        f'{d}/repos/cart/catalog-info.yaml:4: warning: component "cart": owner "storefront" is not a team or group of the catalog [unknown-owner]',
        "4 error(s), 4 warning(s)",
    ], out.stdout

    gh = lint(str(d / "catalog"), str(d / "repos"), "--format", "github")
    assert gh.returncode == 1
    first = gh.stdout.splitlines()[0]
    assert first == (f"::error file={s},line=4,title=catalog lint%3A duplicate-service::"
                     f'duplicate service "checkout" (first defined at {p}:6)'), first
    assert sum(line.startswith("::warning ") for line in gh.stdout.splitlines()) == 4

    js = lint(str(d / "catalog"), str(d / "repos"), "--format", "json")
    doc = json.loads(js.stdout)
    assert (doc["errors"], doc["warnings"]) == (4, 4)
    assert doc["findings"][1] == {"severity": "error", "code": "unknown-team", "file": str(s), "line": 7,
                                  "message": 'service "indexer": unknown team "serch" (did you mean "search"?)'}


def test_known_services_check_the_rules(tmp_path):
    (tmp_path / "c.yaml").write_text("""teams:
  - { name: search, contact: "#search", oncall: "pd:S" }
rules:
  - match: { service.name: "search-*" }
    team: search
""")
    (tmp_path / "seen.txt").write_text("# services seen this week\ncheckout\ncart\n")
    out = lint(str(tmp_path / "c.yaml"), "--services", str(tmp_path / "seen.txt"))
    assert out.returncode == 0, out
    assert "rule 1: `service.name` pattern \"search-*\" matches none of the 2 known services" in out.stdout
    (tmp_path / "seen.txt").write_text("search-api\n")
    assert lint(str(tmp_path / "c.yaml"), "--services", str(tmp_path / "seen.txt")).stdout.endswith(
        "0 error(s), 0 warning(s)\n")


def test_the_repository_catalog_is_clean_and_usage_errors_exit_2(tmp_path):
    ok = lint("--config", "config/sightline.yaml", cwd=REPO)
    assert ok.returncode == 0 and ok.stdout == "0 error(s), 0 warning(s)\n", ok
    assert lint().returncode == 2
    assert lint("--format", "xml", "x").returncode == 2
    both = lint("x", "--config", "config/sightline.yaml", cwd=REPO)
    assert both.returncode == 2 and "not both" in both.stderr
    missing = lint(str(tmp_path / "nope"))
    assert missing.returncode == 1 and "[io]" in missing.stdout
