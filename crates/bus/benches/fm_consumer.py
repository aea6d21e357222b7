"""The no-op step on fedora-messaging, for crates/bus/benches/noop.rs to compare against.

Consumes BENCH_QUEUE (bound to `bench.in` on BENCH_EXCHANGE), reads the body's `n` (the body
itself is validated by fedora-messaging), publishes one `bench.out` message with publisher
confirms, and returns so the input is acked. Configured through FEDORA_MESSAGING_CONF.
"""

import os

from fedora_messaging import api, message


def main():
    exchange = os.environ["BENCH_EXCHANGE"]
    queue = os.environ["BENCH_QUEUE"]

    def callback(incoming):
        n = incoming.body["n"]
        api.publish(message.Message(topic="bench.out", body={"n": n}))

    bindings = [{"exchange": exchange, "queue": queue, "routing_keys": ["bench.in"]}]
    queues = {queue: {"durable": True, "auto_delete": False, "exclusive": False, "arguments": {}}}
    api.consume(callback, bindings=bindings, queues=queues)


if __name__ == "__main__":
    main()
