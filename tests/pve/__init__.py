"""The project's extension of fakepve: DRBD storage rules, stateful HA with a manager, fault helpers and a check
against the PVE API reference. fake.ProjectPve is the model, serving.ServedPve serves it, plugin has the fixtures.
"""
