"""`proxmoxwp doctor`: whether everything a site needs is in place, said in an operator's words.

Two parts: what this machine can check itself (`local`: the database, the queue, the inventory, the SSH key, the
resolvers, the way to the containers), which `GET /health?deep=1` also runs, and what only the cluster, Nginx Proxy
Manager and the DNS provider can answer (`cluster`: playbooks/doctor.yml, through the collection's check modules,
with the inventory's connections, as a job's playbook gets them).
"""
