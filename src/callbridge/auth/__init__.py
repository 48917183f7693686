"""callbridge.auth: workspaces, access keys and authentication of API credentials."""
