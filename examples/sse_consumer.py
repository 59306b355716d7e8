"""Follow a stellar-reconciler's events over Server-Sent Events, resuming after every break.

    python examples/sse_consumer.py http://127.0.0.1:8080 [--contract-id C...] [--topic transfer]
                                    [--from-ledger N] [--token READ_TOKEN]

Prints one JSON event per line. It remembers the id of the last event it received and, when
the connection drops, reconnects with that id in the `Last-Event-ID` header, so the service
resumes right after it: no event is missed and none is printed twice. Only httpx is needed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx


def read_events(
    http: httpx.Client, params: dict[str, str], last_event_id: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, event) for each event of one connection, until it ends or breaks. An event
    counts only once its blank line arrived, so a cut half-way never yields a partial one."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with http.stream("GET", "/api/events/stream", params=params, headers=headers) as response:
        response.raise_for_status()
        event_id, data = None, []
        for line in response.iter_lines():
            if line.startswith(":"):
                continue  # a heartbeat comment
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and event_id is not None and data:
                yield event_id, json.loads("\n".join(data))
                event_id, data = None, []


def follow(
    base_url: str, params: dict[str, str], retry_seconds: float = 1.0, token: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every event, in order, forever: reconnects after each break with Last-Event-ID."""
    last_event_id = None
    # The service sends a heartbeat every 15 s, so a minute without a byte is a dead link.
    timeout = httpx.Timeout(10.0, read=60.0)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=base_url, timeout=timeout, headers=headers) as http:
        while True:
            try:
                for event_id, event in read_events(http, params, last_event_id):
                    last_event_id = event_id
                    yield event
            except httpx.TransportError:
                pass  # dropped or refused: try again below
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code < 500:
                    raise  # a bad filter or token: retrying cannot help
                # 503: the service's database is down; try again below
            time.sleep(retry_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_url", help="the service's address, e.g. http://127.0.0.1:8080")
    parser.add_argument("--contract-id")
    parser.add_argument("--topic")
    parser.add_argument("--from-ledger")
    parser.add_argument("--token", help="the READ_TOKEN, when the service has one")
    args = parser.parse_args()
    filters = {
        "contract_id": args.contract_id,
        "topic": args.topic,
        "from_ledger": args.from_ledger,
    }
    params = {name: value for name, value in filters.items() if value is not None}
    for event in follow(args.base_url, params, token=args.token):
        print(json.dumps(event), flush=True)


if __name__ == "__main__":
    main()
