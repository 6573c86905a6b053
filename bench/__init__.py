"""Side-by-side load benchmark of cowdns' table designs (``python -m bench``).

Each measured server is a real process on loopback, driven by dnsperf at a
fixed query rate while the bench rewrites its table and asks it to reload.
See ``bench/README.md`` for how to run it and read the results.
"""
