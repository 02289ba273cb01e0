"""Deploy robot: CI gate, GitHub Deployments and deploy steps, driven from Slack or a terminal."""
