"""Overlap making a job's examples with writing them, in one process (``--jobs 1``).

Decoding (or synthesising) the next work item and writing the previous one's part file use
different cores: the producer thread runs the source's ``produce``, this thread writes. The
examples are handed over in item order, so the parts and their bytes are those a plain loop
writes. ``produce`` must not change an example's arrays once it has yielded it (the writer
reads them later, without copying).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from lpie_data.items import Produce, WorkItem
from lpie_data.records import Example, Later

#: ``write(examples, item, index, work) -> index``: stores one item's part files in ``work``.
WritePart = Callable[[Iterable[Example | Later], WorkItem, int, str], int]


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()
#: Items the producer may finish before the writer has finished the one it is writing.
ITEMS_AHEAD = 1


def run_overlapped(produce: Produce, write: WritePart, todo: Sequence[tuple[int, WorkItem]],
                   work: str) -> Iterator[int]:
    """The items of ``todo`` in order, in this process: a producer thread runs ``produce``
    (decoding, synthesis) while this thread runs ``write(examples, item, index, work)`` on the
    examples handed over. The producer may run one whole item ahead of the writer (memory:
    the item being written and the next), so that decoding the next item overlaps writing all
    of this one, not only its last example (an item handed over one example at a time held
    the producer until the writer had taken all but one). Numpy, the codecs and file writes
    release the GIL, so the two overlap on two cores. Errors are those
    :func:`lpie_data.backends.run_item` gives; yields ``write``'s result (the index) once each
    item's part is stored."""
    from lpie_data.backends import run_item

    handoff: queue.Queue[Any] = queue.Queue()
    ahead = threading.Semaphore(ITEMS_AHEAD + 1)  # items produced but not yet written
    stop = threading.Event()

    def put(entry: Any) -> bool:
        if not stop.is_set():
            handoff.put(entry)
        return not stop.is_set()

    def start_item() -> bool:
        while not stop.is_set():
            if ahead.acquire(timeout=0.1):
                return True
        return False

    def hand_over(produce: Produce, item: WorkItem, index: int, work: str) -> int:
        for ex in produce(item):
            if not put(ex):
                break
        return index

    def producer() -> None:
        try:
            for index, item in todo:
                if not start_item():
                    return
                run_item(hand_over, produce, item, index, work)
                if not put(_END):
                    return
        except BaseException as e:  # handed to the writer, which raises it
            put(_Failed(e))

    def handed_over() -> Iterator[Example | Later]:
        while (entry := handoff.get()) is not _END:
            if isinstance(entry, _Failed):
                raise entry.error
            yield entry

    def write_handed_over(produce: Produce, item: WorkItem, index: int, work: str) -> int:
        try:
            return write(handed_over(), item, index, work)
        finally:
            ahead.release()

    thread = threading.Thread(target=producer, name="lpie-produce", daemon=True)
    thread.start()
    try:
        for index, item in todo:
            yield run_item(write_handed_over, produce, item, index, work)
    finally:
        stop.set()
        thread.join()
