"""Schema fuzzing: requests generated from the service's own OpenAPI schema (schemathesis),
sent to the real app (ASGI transport) with a real bundle, each with a random credential.

Every answer must be below 500 and match what the schema documents for that route (status,
content type, body). `python -m tests.service.fuzz` is the long run behind `make fuzz`: it
trains a bundle, fuzzes every operation and prints a summary (a CLI entry point, so it prints).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.schemas import APIOperation

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@dataclass
class FuzzReport:
    """Requests sent per operation and the statuses seen."""

    sent: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    @property
    def server_errors(self) -> int:
        return sum(n for seen in self.statuses.values() for code, n in seen.items() if code >= 500)


def operations(app: FastAPI) -> list[APIOperation]:
    """Every operation the app's OpenAPI schema documents."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def fuzz_operation(
    operation: APIOperation, credentials: list[str | None], max_examples: int, report: FuzzReport
) -> None:
    """Send `max_examples` generated requests; raises on the first failed check."""
    label = operation.label
    seen = report.statuses.setdefault(label, Counter())

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), key=st.sampled_from(credentials))
    def run(case: schemathesis.Case, key: str | None) -> None:
        # The generated credentials are random text (always 401): send one of ours instead.
        for name in list(case.headers or {}):
            if name.lower() in ("authorization", "x-api-key"):
                del case.headers[name]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        report.sent[label] += 1
        seen[response.status_code] += 1

    run()


def main(argv: list[str] | None = None) -> int:
    from tests.service.bundle import trained_registry, with_keys

    parser = argparse.ArgumentParser(prog="python -m tests.service.fuzz", description=__doc__)
    parser.add_argument("--examples", type=int, default=1000, help="requests per operation")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="promise-fuzz-"))
    report = FuzzReport()
    failed: list[str] = []
    try:
        app, credentials = with_keys(trained_registry(folder), folder)
        from fastapi.testclient import TestClient

        with TestClient(app):
            for operation in operations(app):
                try:
                    fuzz_operation(operation, credentials, args.examples, report)
                except Exception as err:  # report every operation, then fail
                    failed.append(f"{operation.label}: {type(err).__name__}: {err}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for label, seen in sorted(report.statuses.items()):
        codes = ", ".join(f"{code}x{n}" for code, n in sorted(seen.items()))
        print(f"{label:45} {report.sent[label]:6} requests  {codes}")
    print(f"requests sent: {sum(report.sent.values())}")
    print(f"5xx seen: {report.server_errors}")
    print(f"failed operations: {len(failed)}")
    for line in failed:
        print(f"  {line}", file=sys.stderr)
    return 1 if failed or report.server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
