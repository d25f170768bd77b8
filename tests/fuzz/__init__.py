"""Fuzzing serouter's input paths: transport framing, serializers and the session state machine.

``generate`` draws random (mostly well-formed, now and then spoiled) client traffic from one
seed; ``targets`` feeds it to a real Router through the real Twisted protocols (or straight to
sessions, with fakes) and checks after every case that nothing raised, nothing was logged as an
internal error, every byte the router sent decodes, and every resource went with its
connection. ``python -m tests.fuzz`` is the long run (``make fuzz``);
``tests/test_hardening_fuzz.py`` runs a short one inside ``make test``. See docs/reliability.md.
"""
