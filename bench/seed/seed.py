"""The seed's design, as a baseline for the bench: an aiohttp redirect
server that publishes every click to RabbitMQ through aio-pika with
publisher confirms and answers only after the broker's ack.

It is what the project started from (an aiohttp + aio-pika edge without a
local outbox), kept here so that `go -C bench run .` can measure clickedge
against it on the same machine and the same broker. Debian packages:
python3-aiohttp python3-aio-pika.

Usage: python3 seed.py --listen 127.0.0.1:8080 --amqp URL --exchange clicks --region bench
GET /r/{code} answers 302 after the confirm; GET /stats gives the counts.
"""

import argparse
import asyncio
import json
import os
import signal
import time
import uuid

import aio_pika
from aiohttp import web


def click_id():
    # A UUIDv7 as 32 hex digits: 48 bits of milliseconds, then randomness.
    ms = time.time_ns() // 1_000_000
    r = int.from_bytes(os.urandom(10), "big")
    v = (ms << 80) | (0x7 << 76) | ((r >> 68) & 0xFFF) << 64 | (0b10 << 62) | (r & ((1 << 62) - 1))
    return "%032x" % v


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:8080")
    ap.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    ap.add_argument("--exchange", default="clicks")
    ap.add_argument("--region", default="bench")
    args = ap.parse_args()

    conn = await aio_pika.connect(args.amqp)
    channel = await conn.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(args.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    key = "click." + args.region
    stats = {"published": 0, "acked": 0, "nacked": 0, "failed": 0}

    async def redirect(request):
        code = request.match_info["code"]
        cid = click_id()
        subid = request.query.get("subid", "")
        loc = "https://shop.example/tv?cid=%s&sub=%s" % (cid, subid)
        body = json.dumps({
            "v": 1, "click_id": cid,
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "link": code, "url": loc, "region": args.region, "device": "desktop",
            "params": {"subid": subid},
        }).encode()
        msg = aio_pika.Message(body=body, content_type="application/json",
                               delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=cid,
                               headers={"region": args.region, "node": "seed", "schema": 1})
        stats["published"] += 1
        try:
            await exchange.publish(msg, routing_key=key, mandatory=True)
        except Exception as e:  # nack, return or a lost channel
            stats["failed"] += 1
            return web.Response(status=503, text="publish: %s" % e)
        stats["acked"] += 1
        return web.Response(status=302, headers={"Location": loc, "Cache-Control": "no-store"})

    async def get_stats(request):
        return web.json_response(stats)

    app = web.Application()
    app.router.add_get("/r/{code}", redirect)
    app.router.add_get("/stats", get_stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = args.listen.rsplit(":", 1)
    site = web.TCPSite(runner, host, int(port))
    await site.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    await runner.cleanup()
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
