"""Layer 0: shared basics with no dependency on the rest of curate, train or annotations:
errors, YAML configs, atomic writes and file hashes, the device resolver, JSON-array salvage,
text and chat-message readers. Importing this package loads nothing heavy."""
