"""The home node: server, client API, mailboxes, store, ``sonet-node`` CLI."""
