"""``worldfm view``: fly through a generated world in the browser.

The page (``static/``, plain HTML + JavaScript, no build step) talks to a WebSocket gateway
(:mod:`python_bridge.viewer.gateway`, aiohttp) on 127.0.0.1; the gateway speaks protocol v1
to ``worldfm serve`` through :class:`python_bridge.client.Client` (:mod:`.workers`) and
opens only the scenes :mod:`.catalog` lists. The page protocol is in docs/viewer.md.
"""
