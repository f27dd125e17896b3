"""The golden image: `proxmoxwp image build` writes it (playbooks/template_build.yml), `proxmoxwp image upload`
puts it on the cluster's template storage through the Proxmox VE API (docs/operations.md)."""
