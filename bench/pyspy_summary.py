"""Summarise a py-spy profile recorded with `--format raw --threads` (bench/run.py --profile):
share of samples per thread, and the top self / inclusive frames of one thread.

usage: .venv/bin/python bench/pyspy_summary.py FILE [--thread MainThread] [--top 30]
"""

from __future__ import annotations

import argparse
import collections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--thread", default="MainThread", help="substring of the thread name to detail")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    threads: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    with open(args.file) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = stack.split(";")
            threads[frames[0]] += n
            if args.thread not in frames[0]:
                continue
            total += n
            own[frames[-1]] += n
            for frame in set(frames[1:]):
                incl[frame] += n
    everything = sum(threads.values()) or 1
    print("samples per thread (busy samples only):")
    for name, n in threads.most_common(10):
        print(f"  {100 * n / everything:5.1f} %  {name}")
    total = total or 1
    print(f"\n{args.thread}: self")
    for name, n in own.most_common(args.top):
        print(f"  {100 * n / total:5.1f} %  {name}")
    print(f"\n{args.thread}: inclusive")
    for name, n in incl.most_common(args.top * 2):
        print(f"  {100 * n / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
