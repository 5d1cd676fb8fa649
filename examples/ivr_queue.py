# ivr_queue.py
"""A small call centre: an IVR and a queue, driven over REST with the official telnyx SDK.

Callers dial 5000: the application answers, greets them and gathers a digit; pressing 1 puts
them in the queue "front", where they hear hold music. The application then calls an agent;
when the agent answers it bridges the agent to the caller who waited longest, and the agent's
phone learns who it got (the ``bridged`` event: the caller, the queue, the wait). Webhooks come
to a small receiver on 127.0.0.1 and are verified with the SDK.

To run it yourself, the server must be allowed to post webhooks to 127.0.0.1
(``callbridge serve --allow-webhooks-to 127.0.0.1``). Then, with an API key
(``callbridge apikey create``) and the login tokens of a caller and an agent
(``callbridge token NAME``), this script plays all three parts: application, caller, agent::

    python ivr_queue.py API_KEY CALLER_TOKEN AGENT_TOKEN

The server is http://127.0.0.1:8080 unless $CALLBRIDGE_URL says otherwise.
"""

import asyncio
import base64
import os
import sys

from telnyx import AsyncTelnyx

from callbridge.client import Phone, ToneSource, WavRecorder

URL = os.environ.get("CALLBRIDGE_URL", "http://127.0.0.1:8080")
LINE = "5000"  # the extension callers dial, routed to this application
QUEUE = "front"


def tag(text: str) -> str:
    """A ``client_state``: base64, given with a command, returned with the call's webhooks."""
    return base64.b64encode(text.encode()).decode()


class FrontDesk:
    """The application: what it does with each webhook."""

    def __init__(self, client: AsyncTelnyx, agent: str) -> None:
        self.client, self.agent = client, agent  # the agent's extension
        self.app_id = ""  # the application's id, once created
        self.actions = client.calls.actions
        # For this demo, which plays the caller too: the caller presses 1 once the menu
        # listens; the script ends once both calls' last webhooks came.
        self.menu_ready = asyncio.Event()
        self.hangups = asyncio.Queue()

    async def handle(self, event) -> None:
        kind, p = event.data.event_type, event.data.payload
        if kind == "call.initiated" and p.direction == "incoming":
            await self.actions.answer(p.call_control_id, client_state=tag("caller"))
        elif kind == "call.answered" and p.client_state == tag("caller"):
            await self.actions.speak(
                p.call_control_id, voice="female", payload="Welcome. Press 1 for an agent."
            )
            await self.actions.gather(p.call_control_id, maximum_digits=1, timeout_millis=20000)
            self.menu_ready.set()
        elif kind == "call.gather.ended" and p.digits == "1":
            await self.actions.enqueue(p.call_control_id, queue_name=QUEUE)
        elif kind == "call.gather.ended":
            await self.actions.hangup(p.call_control_id)  # any other key, or none
        elif kind == "call.enqueued":  # someone waits: ring the agent
            await self.client.calls.dial(
                connection_id=self.app_id,
                to=self.agent,
                from_=LINE,
                from_display_name="Front desk",
                client_state=tag("agent"),
            )
        elif kind == "call.answered" and p.client_state == tag("agent"):
            # The agent gets whoever waited longest in the queue.
            await self.actions.bridge(
                p.call_control_id, call_control_id_to_bridge_with="", queue=QUEUE
            )
        elif kind == "call.hangup":
            self.hangups.put_nowait(p.call_control_id)


async def receive_webhooks(client: AsyncTelnyx, desk: FrontDesk, tasks: asyncio.TaskGroup):
    """An HTTP server on 127.0.0.1 (a free port) taking the application's webhooks."""
    public_key = (await client.get("/public_key", cast_to=object))["data"]["public_key"]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readline():  # the request line; keep-alive: one request a turn
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                # unwrap() checks the ed25519 signature (and its age) before parsing the event.
                event = client.webhooks.unwrap(body.decode(), headers=headers, key=public_key)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                tasks.create_task(desk.handle(event))  # answered first: commands make webhooks
        except asyncio.CancelledError:
            # The server keeps its webhook connection open (keep-alive); at exit asyncio
            # cancels this handler, and Python 3.11's stream callback would print the
            # cancellation as an error. The connection is simply over.
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def main(api_key: str, caller_token: str, agent_token: str) -> None:
    ws = URL.replace("http", "ws", 1) + "/ws"
    async with (
        AsyncTelnyx(api_key=api_key, base_url=f"{URL}/v2") as client,
        Phone(ws, caller_token) as caller,
        Phone(ws, agent_token) as agent,
        asyncio.TaskGroup() as tasks,
    ):
        desk = FrontDesk(client, agent=agent.session.user["extension"])
        webhooks = await receive_webhooks(client, desk, tasks)
        port = webhooks.sockets[0].getsockname()[1]
        app = await client.call_control_applications.create(
            application_name="front desk", webhook_event_url=f"http://127.0.0.1:{port}/webhooks"
        )
        desk.app_id = app.data.id
        await client.post(
            "/routes",
            body={"destination": LINE, "application_id": app.data.id},
            cast_to=object,
        )

        # The agent answers when the application rings her, and learns who she got.
        bridged = asyncio.Queue()

        async def on_incoming(work) -> None:
            work.on("bridged", lambda got: bridged.put_nowait((work, got)))
            await work.answer(source=ToneSource(1000), sink=WavRecorder("agent-hears.wav"))

        agent.on("incoming", on_incoming)

        call = await caller.call(LINE, source=ToneSource(440))
        call.on("ended", lambda reason: print("caller: ended,", reason))
        await call.wait_for("answered")
        await desk.menu_ready.wait()
        await call.send_dtmf("1")  # the caller picks the agent queue

        work, got = await bridged.get()
        print(f"agent: got {got.peer} from queue {got.queue} after {got.wait_time_secs} s")
        await asyncio.sleep(1)  # they talk
        await work.hangup()
        await call.wait_for("ended")  # the caller's call ends with the agent's
        for _ in range(2):
            await desk.hangups.get()  # both calls' last webhooks came

        await client.call_control_applications.delete(app.data.id)
        webhooks.close()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python ivr_queue.py API_KEY CALLER_TOKEN AGENT_TOKEN")
    asyncio.run(main(*sys.argv[1:]))
