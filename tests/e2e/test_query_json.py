"""The same calls as test_goquery.py, as Connect JSON with curl (what scripts and the Profiles
Drilldown app send), against a server fed by the correlation scenario: the same numbers, and
Connect errors with HTTP 400 and {"code": "invalid_argument", "message": …} naming the bad span
id or selector.

One curl process runs the whole plan from a config file (one transfer per call, `next` between
them), so the calls share a keep-alive connection as a script's would.
"""
import json
import shutil
import subprocess

import pytest

from test_goquery import build_plan

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")


def _quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_curl(server, calls, workdir):
    cfg = []
    for i, c in enumerate(calls):
        body = workdir / f"req{i}.json"
        body.write_text(json.dumps(c["request"]))
        if i:
            cfg.append("next")
        cfg += [f"url = {_quote(f'http://{server.http_target}/querier.v1.QuerierService/' + c['method'])}",
                "request = \"POST\"",
                "header = \"Content-Type: application/json\"",
                "header = \"Connect-Protocol-Version: 1\"",
                f"data-binary = {_quote('@' + str(body))}",
                f"output = {_quote(str(workdir / f'resp{i}.json'))}",
                "write-out = \"%{http_code} %{content_type} %{http_version}\\n\"",
                "max-time = 20"]
    (workdir / "curl.cfg").write_text("\n".join(cfg) + "\n")
    r = subprocess.run(["curl", "-sS", "-K", str(workdir / "curl.cfg")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert len(lines) == len(calls), (len(lines), len(calls), r.stderr[-2000:])
    results = {}
    for i, (c, line) in enumerate(zip(calls, lines)):
        status, ctype, version = line.split(" ")
        data = json.loads((workdir / f"resp{i}.json").read_bytes() or b"{}")
        res = {"status": int(status), "contentType": ctype, "version": version}
        if res["status"] == 200:
            res["response"] = data
        else:
            res["error"] = data
        results[c["id"]] = res
    return results


def test_curl_connect_json_gets_the_scenario_numbers(corr_scenario_server, tmp_path):
    server, scn, exp = corr_scenario_server
    plan = build_plan(scn, exp)
    results = run_curl(server, plan.calls, tmp_path)
    shapes = {(r["version"], r["contentType"].split(";")[0]) for r in results.values()}
    assert shapes == {("1.1", "application/json")}, shapes
    problems = plan.run_checks(results)
    # Connect maps invalid_argument to HTTP 400
    problems += [f"{cid}: HTTP {r['status']} with code {r['error'].get('code')!r}"
                 for cid, r in results.items()
                 if "error" in r and (r["status"], r["error"].get("code")) != (400, "invalid_argument")]
    if problems:
        pytest.fail(f"{len(problems)} of {len(plan.calls)} calls answered wrongly:\n" +
                    "\n".join(problems[:60]), pytrace=False)
