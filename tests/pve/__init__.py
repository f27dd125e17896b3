"""The pytest plugin serving the project's fake PVE (lab.pve) to the tests: fixtures pve_pki, pve and pve_api."""
