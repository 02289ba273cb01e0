"""Step runners: argv commands, Ansible playbooks, and the dispatcher that picks one per step."""
