"""The lab: the whole system on one machine, on top of the product (docs/lab.md).

Stand-ins for what a real cluster has: `lab.pve` (the Proxmox VE API on real LXC containers), `lab.npm` (the
Nginx Proxy Manager API on a real nginx), `lab.powerdns` (PowerDNS), and `lab.supervisor`, which starts,
checks and stops them with the API and a worker (`proxmoxwp lab up | status | down`). Installed with the `lab`
extra; the product never imports it.
"""
