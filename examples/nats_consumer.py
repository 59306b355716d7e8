"""A durable JetStream consumer of the events stellar-reconciler publishes.

    python examples/nats_consumer.py --durable my-app --subject 'stellar.>'

Prints one JSON line per message (event id, subject, ledger) and acknowledges it after
printing. The consumer is durable: stopped and started again with the same --durable name, it
goes on where it stopped, and it waits out a NATS outage. JetStream delivers at least once: a
message whose acknowledgement was lost comes again, so this consumer skips stream sequences it
has seen (the publisher never stores an event twice in the stream: each message carries the
event id as its Nats-Msg-Id, and the stream drops a repeated id).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

import nats
import nats.errors
from nats.aio.msg import Msg


def describe(msg: Msg) -> dict[str, object]:
    body = json.loads(msg.data)
    return {
        "id": (msg.headers or {}).get("Nats-Msg-Id"),
        "subject": msg.subject,
        "ledger": body.get("ledger"),
    }


async def consume(url: str, stream: str, durable: str, subject: str, stop: asyncio.Event) -> None:
    nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.5)
    js = nc.jetstream()
    subscription = None
    # Kept in memory here; a real consumer stores it with what it did, in one transaction.
    last_sequence = 0
    try:
        while not stop.is_set():
            try:
                if subscription is None:
                    # The stream appears when the service first publishes; wait for it.
                    subscription = await js.pull_subscribe(subject, durable=durable, stream=stream)
                for msg in await subscription.fetch(100, timeout=1):
                    sequence = msg.metadata.sequence.stream
                    # A message whose acknowledgement was lost (NATS restarted, say) comes
                    # again; the stream's sequence tells it from a new one.
                    if sequence > last_sequence:
                        print(json.dumps(describe(msg)), flush=True)
                        last_sequence = sequence
                    await msg.ack()
            except TimeoutError:
                # Nothing new within the second (the client raises asyncio's or its own).
                continue
            except nats.errors.Error as exc:
                print(f"waiting for NATS: {type(exc).__name__} {exc}", file=sys.stderr, flush=True)
                await asyncio.sleep(0.5)
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--stream", default="STELLAR_EVENTS")
    parser.add_argument("--durable", default="example-consumer")
    parser.add_argument("--subject", default="stellar.>")
    args = parser.parse_args()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await consume(args.url, args.stream, args.durable, args.subject, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
