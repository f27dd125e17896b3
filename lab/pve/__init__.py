"""The lab's Proxmox VE API: fakepve extended with the rules of the infrastructure ProxmoxWP runs on.

fake.ProjectPve is the model the tests talk to (DRBD storage rules, stateful HA with a manager, fault helpers, a
check against the PVE API reference); serving.ServedPve serves it over TLS on a thread of its own (the pytest
fixtures are in tests/pve/plugin.py). lxc.LabPve is the same API whose containers are real LXC containers on this
machine, and `python -m lab.pve` serves it for the lab (docs/lab-pve.md).
"""
