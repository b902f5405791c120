"""rrverify: record a Linux x86-64 program once, without hardware performance counters, and
prove that the recording replays faithfully."""

__version__ = "0.1.0"


def _source_tree_parts() -> None:
    """Run from a source tree (an editable install puts it on sys.path), the other parts
    (recorder/, checkpoints/, ...) sit beside this package, not in it: they are found there.
    An installed wheel has them inside, and nothing is added. (Setuptools' own editable finder
    would map them too, but it costs every Python started in the environment 20 ms of imports,
    rrverify record's start-up included.)"""
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(root, "recorder", "record.py")):
        __path__.append(root)


_source_tree_parts()
