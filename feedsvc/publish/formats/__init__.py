"""The feed formats, one module each (Atom, RSS, JSON Feed), registered in `registry`."""
