"""The edge: everything that touches files, the network or the terminal, used by the CLI and scripts.

``files``: the atomic writer and PNG/GIF/MP4/JSON output; ``images``: reading photos;
``locations`` / ``weights`` / ``fetch``: finding, describing and fetching weight files, with messages.
"""
