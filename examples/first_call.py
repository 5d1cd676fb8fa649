# first_call.py
"""Alice calls Bob, who answers and records what he hears; she sends DTMF, holds, resumes and
hangs up. Usage: python first_call.py ALICE_TOKEN BOB_TOKEN (server: $CALLBRIDGE_WS)."""
import asyncio
import os
import sys

from callbridge.client import Phone, ToneSource, WavRecorder

URL = os.environ.get("CALLBRIDGE_WS", "ws://127.0.0.1:8080/ws")


async def main(alice_token: str, bob_token: str) -> None:
    async with Phone(URL, alice_token) as alice, Phone(URL, bob_token) as bob:
        # Bob answers sending a 1000 Hz tone; what he hears goes to bob-hears.wav.
        bob.on("incoming", lambda call: call.answer(
            source=ToneSource(1000), sink=WavRecorder("bob-hears.wav")))

        call = await alice.call("1002", source=ToneSource(440))   # Bob's extension
        call.on("ended", lambda reason: print("ended:", reason))
        await call.wait_for("answered")
        await call.send_dtmf("1234#")
        await call.hold()
        await asyncio.sleep(2)                                     # Bob hears hold music
        await call.resume()
        await call.hangup()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python first_call.py ALICE_TOKEN BOB_TOKEN")
    asyncio.run(main(*sys.argv[1:]))
