"""A chat-bot loop keyed by channel id: each line on stdin is `CHANNEL<TAB>MESSAGE`; the bot
answers in that channel's own conversation (one per channel, kept across restarts) and
prints `CHANNEL<TAB>ANSWER`. Swap stdin/stdout for your chat platform's client.

    printf 'general\tHello\nrandom\tHi there\n' | python python/examples/chat_bot.py

`/remember TEXT` stores a memory for the channel; `/recall QUERY` searches them.
"""

import sys

import zocalo


def main():
    z = zocalo.Zocalo()
    for line in sys.stdin:
        channel, _, message = line.rstrip("\n").partition("\t")
        if not message.strip():
            continue
        scope = f"channel:{channel}"
        try:
            if message.startswith("/remember "):
                z.memory.add(message[len("/remember ") :], scope=scope)
                answer = "noted"
            elif message.startswith("/recall "):
                hits = z.memory.search(message[len("/recall ") :], scope=scope, limit=3)
                answer = " | ".join(h["text"] for h in hits) or "nothing"
            else:
                # Stream the answer as it comes; print it once it is whole.
                with z.ask_stream(message, conv_key=f"chat:{channel}") as stream:
                    answer = stream.text()
        except zocalo.Error as e:
            answer = f"sorry: {e}"
        print(f"{channel}\t{answer}", flush=True)


if __name__ == "__main__":
    main()
