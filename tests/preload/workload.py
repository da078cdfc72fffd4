"""An allocation-heavy Python workload with deterministic output.

Run it with and without LD_PRELOAD=libpoolalloc.so and compare stdout
(preload/tests/programs.rs does). Dicts, lists, strings, bytes growing by
realloc, JSON, regular expressions, threads handing objects to each other,
and a fork from a threaded process. Every line printed is a digest of what
was built, so a corrupted block changes the output.

    python3 workload.py [SCALE]     SCALE multiplies the sizes (default 1)
"""

import gc
import hashlib
import json
import os
import queue
import re
import sys
import threading

SCALE = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0


def n(k):
    return max(1, int(k * SCALE))


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def dicts():
    d = {}
    for i in range(n(200_000)):
        d["key-%d" % i] = (i, str(i) * (i % 7), [i] * (i % 5))
    for i in range(0, n(200_000), 3):
        del d["key-%d" % i]
    nested = {i: {j: str(i * j) for j in range(i % 50)} for i in range(n(5_000))}
    return len(d), digest(sorted(d.items())[:1000]), digest(nested)


def lists_and_strings():
    rows = [[j * i for j in range(i % 40)] for i in range(n(50_000))]
    text = " ".join(str(sum(r)) for r in rows)
    words = text.split()
    joined = "".join(w[::-1] for w in words)
    parts = [joined[i : i + 1000] for i in range(0, len(joined), 997)]
    return len(rows), len(words), digest(sorted(parts)[:50])


def growing_bytes():
    b = bytearray()
    for i in range(n(300_000)):
        b += (i % 251).to_bytes(1, "little") * (i % 13)
    s = b""
    for i in range(n(2_000)):
        s += bytes(range(i % 256))
    return len(b), hashlib.sha256(b).hexdigest()[:16], hashlib.sha256(s).hexdigest()[:16]


def json_and_regex():
    doc = [{"id": i, "name": "item%d" % i, "tags": ["t%d" % (i % 10)] * (i % 4)} for i in range(n(30_000))]
    text = json.dumps(doc, sort_keys=True)
    back = json.loads(text)
    found = re.findall(r'"name": "item(\d*7)"', text)
    return len(text), back == doc, len(found), digest(found[:100])


def produce(k, outbox):
    local = {}
    for i in range(n(40_000)):
        local[i] = ("w%d" % k) * (i % 9)
        if i % 50 == 0:
            outbox.put([local[i]] * 10)
    outbox.put(None)


def consume(k, inbox, results):
    total = 0
    while (item := inbox.get()) is not None:
        total += sum(len(x) for x in item)
    results[k] = total


def threads():
    """Objects built on one thread, consumed and freed on another."""
    qs = [queue.Queue(maxsize=64) for _ in range(4)]
    results = [0] * 4
    ts = [threading.Thread(target=produce, args=(k, qs[k])) for k in range(4)]
    ts += [threading.Thread(target=consume, args=(k, qs[k], results)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results


def fork_from_threads():
    stop = threading.Event()

    def churn():
        junk = []
        while not stop.is_set():
            junk.append(["x" * 100] * 100)
            if len(junk) > 200:
                junk.clear()

    bg = [threading.Thread(target=churn) for _ in range(2)]
    for t in bg:
        t.start()
    codes = []
    for i in range(n(10)):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            data = {j: str(j) * 10 for j in range(20_000)}
            os.write(w, digest(data).encode())
            os._exit(0)
        os.close(w)
        out = os.read(r, 100)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        codes.append((status, out.decode()))
    stop.set()
    for t in bg:
        t.join()
    return len(codes), set(c for c, _ in codes), len(set(d for _, d in codes))


def main():
    print("dicts", dicts())
    print("lists", lists_and_strings())
    print("bytes", growing_bytes())
    print("json", json_and_regex())
    print("threads", threads())
    print("fork", fork_from_threads())
    gc.collect()
    print("done")


if __name__ == "__main__":
    main()
