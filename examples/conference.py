# conference.py
"""Alice hosts a conference and invites Bob and Carol; each joins with a tone of their own,
Alice welcomes them with speech (text to speech) and ends it once the speech has played.
Usage: python conference.py ALICE_TOKEN BOB_TOKEN CAROL_TOKEN (server: $CALLBRIDGE_WS)."""
import asyncio
import os
import sys

from callbridge.client import Phone, SilenceSource, ToneSource, WavRecorder

URL = os.environ.get("CALLBRIDGE_WS", "ws://127.0.0.1:8080/ws")


async def main(alice_token: str, bob_token: str, carol_token: str) -> None:
    async with (Phone(URL, alice_token) as alice, Phone(URL, bob_token) as bob,
                Phone(URL, carol_token) as carol):
        # An invitation rings the guest's phone: Bob joins with 1000 Hz, Carol with 1400 Hz.
        bob.on("conference:invitation-received", lambda conference: bob.join_conference(
            source=ToneSource(1000), sink=WavRecorder("bob-conference.wav")))
        carol.on("conference:invitation-received", lambda conference: carol.join_conference(
            source=ToneSource(1400)))
        joined, spoken, left = asyncio.Queue(), asyncio.Event(), asyncio.Queue()
        bob.on("conference:ended", left.put_nowait)
        carol.on("conference:ended", left.put_nowait)
        alice.on("conference:invitation-accepted", joined.put_nowait)
        alice.on("conference:speak-ended", lambda conference: spoken.set())

        conf = await alice.start_conference(source=SilenceSource())
        await conf.add_participants(["1002", "1003"])   # Bob's and Carol's extensions
        for _ in range(2):
            await joined.get()                          # both joined
        await conf.speak("Welcome, Bob and Carol.")     # into the room, for everyone
        await spoken.wait()                             # the speech has played to the end
        await conf.end()                                # everyone is disconnected
        for _ in range(2):
            await left.get()
        print("conference ended; Bob and Carol were disconnected")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python conference.py ALICE_TOKEN BOB_TOKEN CAROL_TOKEN")
    asyncio.run(main(*sys.argv[1:]))
