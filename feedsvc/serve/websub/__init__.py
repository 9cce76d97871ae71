"""W3C WebSub: discovery (`topics`), pings to external hubs, and the built-in hub."""
